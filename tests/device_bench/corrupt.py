"""Kinds of broken .tflite files, made from a good one with numpy and the flatbuffer schema (no TensorFlow)."""

from pathlib import Path

import numpy as np


def absurd_shape(model: bytes) -> bytes:
    """The same model with its input tensor resized to 1 x 2^20 x 2^20 x 1 (a 1 TiB float tensor)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model, 0))
    sub = m.subgraphs[0]
    sub.tensors[sub.inputs[0]].shape = np.array([1, 1 << 20, 1 << 20, 1], dtype=np.int32)
    b = flatbuffers.Builder(len(model) * 2)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def make_corrupt_files(good: Path, folder: Path) -> dict[str, Path]:
    """Write one file of each kind of corruption; returns {kind: path}."""
    data = good.read_bytes()
    rng = np.random.default_rng(7)
    random_body = bytearray(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    random_body[4:8] = b"TFL3"  # right magic, garbage inside: reaches LiteRT's parser
    kinds = {
        "empty": b"",
        "truncated": data[: len(data) // 2],
        "random": rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "wrong_magic": data[:4] + b"XXXX" + data[8:],
        "random_with_magic": bytes(random_body),
        "absurd_shape": absurd_shape(data),
        "text": b'{"this": "is json, not a flatbuffer"}\n',
    }
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for kind, blob in kinds.items():
        path = folder / f"{kind}.tflite"
        path.write_bytes(blob)
        out[kind] = path
    return out
