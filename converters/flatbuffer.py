"""Reading and editing the TFLite flatbuffer without TensorFlow.

The schema comes from `ai_edge_litert.schema_py_generated` (the interpreter's own package), so the audit,
`inspect` and `device_bench` can read a model without importing TensorFlow (2.5 s, 590 MB; see NOTES).
"""

from __future__ import annotations

import numpy as np

from edge_lowrank.errors import ModelError

TFLITE_IDENTIFIER = b"TFL3"


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def check_tflite_bytes(tflite) -> bytes:
    """Return `tflite` as bytes, or raise `ModelError` if it is not a TFLite flatbuffer."""
    if not isinstance(tflite, (bytes, bytearray, memoryview)):
        raise ModelError(f"Expected the bytes of a .tflite model. Received: {type(tflite).__name__}.")
    data = bytes(tflite)
    if len(data) < 8 or data[4:8] != TFLITE_IDENTIFIER:
        raise ModelError("Not a TFLite model: the flatbuffer identifier 'TFL3' is missing "
                         f"(received {len(data)} bytes).")
    return data


def read_model(tflite):
    """Unpack the flatbuffer into the schema's object API (`ModelT`)."""
    data = check_tflite_bytes(tflite)
    try:
        model = _schema().ModelT.InitFromPackedBuf(bytearray(data), 0)
    except Exception as e:  # a truncated or corrupt buffer fails deep in flatbuffers
        raise ModelError(f"Corrupt TFLite model ({type(e).__name__}: {str(e)[:120]}).") from None
    if not model.subgraphs or model.subgraphs[0].inputs is None or model.subgraphs[0].tensors is None:
        raise ModelError("Corrupt TFLite model: it has no subgraph with inputs and tensors.")
    return model


def pack_model(model_t) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model_t.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    return bytes(builder.Output())


def _name(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value or "")


def builtin_names() -> dict[int, str]:
    """BuiltinOperator code -> name (CONV_2D, ...)."""
    ops = _schema().BuiltinOperator
    return {v: k for k, v in vars(ops).items() if not k.startswith("_") and isinstance(v, int)}


def tensor_type_names() -> dict[int, str]:
    types = _schema().TensorType
    return {v: k.lower() for k, v in vars(types).items() if not k.startswith("_") and isinstance(v, int)}


def op_code_name(opcode) -> str:
    """The op's name: the builtin name, or the custom code (Flex ops are custom ops named Flex*)."""
    code = max(opcode.builtinCode, opcode.deprecatedBuiltinCode)
    name = builtin_names().get(code, f"BUILTIN_{code}")
    if name == "CUSTOM":
        return _name(opcode.customCode) or "CUSTOM"
    return name


def is_custom(opcode) -> bool:
    return max(opcode.builtinCode, opcode.deprecatedBuiltinCode) == _schema().BuiltinOperator.CUSTOM


def buffer_bytes(model_t, index: int) -> bytes:
    if index is None or index < 0 or not model_t.buffers or index >= len(model_t.buffers):
        return b""
    data = model_t.buffers[index].data
    if data is None:
        return b""
    return np.asarray(data, dtype=np.uint8).tobytes()


def metadata_entries(model_t) -> dict[str, bytes]:
    """The model's metadata buffers by name (min_runtime_version, CONVERSION_METADATA, ours...)."""
    return {_name(m.name): buffer_bytes(model_t, m.buffer) for m in (model_t.metadata or [])}


def with_metadata(tflite, name: str, payload: bytes) -> bytes:
    """Return the model with a metadata buffer `name` holding `payload` (replacing one of that name).

    The repacked flatbuffer is deterministic: the same model and payload give the same bytes.
    """
    schema = _schema()
    model_t = read_model(tflite)
    model_t.metadata = list(model_t.metadata or [])
    buf = schema.BufferT()
    buf.data = np.frombuffer(payload, dtype=np.uint8).copy()
    for entry in model_t.metadata:
        if _name(entry.name) == name:  # replace in place: no orphaned buffer
            model_t.buffers[entry.buffer] = buf
            return pack_model(model_t)
    model_t.buffers = list(model_t.buffers or []) + [buf]
    entry = schema.MetadataT()
    entry.name = name
    entry.buffer = len(model_t.buffers) - 1
    model_t.metadata.append(entry)
    return pack_model(model_t)
