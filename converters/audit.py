"""What is inside a .tflite and how LiteRT runs it: ops, non-builtin ops, quantization, XNNPACK partitions.

Reads the flatbuffer through the schema and asks the real LiteRT interpreter (XNNPACK on, as by default)
which nodes its delegate took. Imports no TensorFlow, so a benchmark process can use it.
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np

from converters.flatbuffer import (buffer_bytes, is_custom, metadata_entries, op_code_name, read_model,
                                   tensor_type_names)
from converters.quiet import quiet_fds
from edge_lowrank.errors import ModelError

# Ops that run outside XNNPACK by design, with the reason (documented exceptions, see NOTES), by op name;
# KNOWN_UNDELEGATED_DTYPES says for which input dtype the exception holds (float SOFTMAX is delegated).
KNOWN_UNDELEGATED = {
    "SOFTMAX": "int8 SOFTMAX is not delegated to XNNPACK; it runs on the builtin kernel",
}
KNOWN_UNDELEGATED_DTYPES = {"SOFTMAX": ("int8",)}


class UnsupportedOpsError(ModelError):
    """The model holds custom or Select-TF (Flex) ops that a plain LiteRT/TFLM build cannot run."""


@dataclasses.dataclass(frozen=True)
class WeightQuant:
    """One constant tensor: its dtype and whether it is quantized per tensor or per channel."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    quantization: str  # "none", "per-tensor" or "per-channel(axis=N)"
    n_scales: int


@dataclasses.dataclass(frozen=True)
class OpAudit:
    """The result of `audit_ops`: one record for `convert` and `inspect` to print."""

    size_bytes: int
    weight_bytes: int
    op_counts: dict[str, int]
    custom_ops: tuple[str, ...]
    flex_ops: tuple[str, ...]
    input_dtypes: tuple[str, ...]
    output_dtypes: tuple[str, ...]
    input_shapes: tuple[tuple[int, ...], ...]
    weights: tuple[WeightQuant, ...]
    xnnpack_partitions: int | None
    undelegated_ops: tuple[str, ...] | None
    metadata_names: tuple[str, ...]
    delegation_error: str | None = None
    undelegated_dtypes: tuple[str, ...] | None = None  # input dtype of each node in `undelegated_ops`

    @property
    def n_ops(self) -> int:
        return sum(self.op_counts.values())

    @property
    def builtin_only(self) -> bool:
        return not self.custom_ops and not self.flex_ops

    @property
    def unexplained_undelegated(self) -> tuple[str, ...]:
        """Ops outside XNNPACK that are not one of the documented exceptions."""
        dtypes = self.undelegated_dtypes or ("",) * len(self.undelegated_ops or ())
        return tuple(op for op, dt in zip(self.undelegated_ops or (), dtypes)
                     if op not in KNOWN_UNDELEGATED or dt not in KNOWN_UNDELEGATED_DTYPES.get(op, (dt,)))

    def quantization_summary(self) -> dict[str, int]:
        counts = collections.Counter()
        for w in self.weights:
            counts[f"{w.dtype} {w.quantization.split('(')[0]}"] += 1
        return dict(sorted(counts.items()))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["n_ops"] = self.n_ops
        d["builtin_only"] = self.builtin_only
        d["quantization_summary"] = self.quantization_summary()
        return d

    def render(self) -> str:
        ops = ", ".join(f"{k} x{v}" for k, v in self.op_counts.items())
        lines = [
            f"size: {self.size_bytes / 1024:.1f} KB ({self.weight_bytes / 1024:.1f} KB of constants)",
            f"io: input {', '.join(self.input_dtypes)} {', '.join(str(s) for s in self.input_shapes)}, "
            f"output {', '.join(self.output_dtypes)}",
            f"ops ({self.n_ops}): {ops}",
            "non-builtin ops: " + (", ".join(self.custom_ops + self.flex_ops) or "none"),
        ]
        if self.xnnpack_partitions is None:
            lines.append(f"xnnpack: not checked ({self.delegation_error})")
        else:
            unexplained = set(self.unexplained_undelegated)
            outside = ", ".join(
                f"{op}{'' if op in unexplained else ' (expected: ' + KNOWN_UNDELEGATED[op] + ')'}"
                for op in self.undelegated_ops) or "none"
            lines.append(f"xnnpack: {self.xnnpack_partitions} partition(s); nodes outside: {outside}")
        quant = ", ".join(f"{k} x{v}" for k, v in self.quantization_summary().items()) or "none"
        lines.append(f"weights: {quant}")
        return "\n".join(lines)


def xnnpack_delegation(tflite: bytes) -> tuple[int, tuple[str, ...], tuple[str, ...]]:
    """Number of XNNPACK partitions, the ops of the nodes left outside them (graph order) and their input dtypes.

    The interpreter lists every original node plus one DELEGATE node per partition; a partition's nodes
    are found by walking back from its outputs to its inputs through the producers of each tensor.
    """
    from ai_edge_litert.interpreter import Interpreter

    with quiet_fds(2):
        interp = Interpreter(model_content=tflite, num_threads=1)
        interp.allocate_tensors()
    ops = interp._get_ops_details()
    delegates = [op for op in ops if op["op_name"] == "DELEGATE"]
    nodes = [op for op in ops if op["op_name"] != "DELEGATE"]
    producer = {}
    for op in nodes:
        for t in op["outputs"]:
            producer[int(t)] = op["index"]
    by_index = {op["index"]: op for op in nodes}
    inside = set()
    for d in delegates:
        boundary = {int(t) for t in d["inputs"]}
        stack = [int(t) for t in d["outputs"]]
        seen = set()
        while stack:
            t = stack.pop()
            if t in seen or t in boundary or t not in producer:
                continue
            seen.add(t)
            node = producer[t]
            if node not in inside:
                inside.add(node)
                stack.extend(int(x) for x in by_index[node]["inputs"] if int(x) >= 0)
    left = [op for op in nodes if op["index"] not in inside]
    dtypes = []
    for op in left:
        first = next((int(t) for t in op["inputs"] if int(t) >= 0), None)
        dtypes.append("" if first is None else np.dtype(interp._get_tensor_details(first, 0)["dtype"]).name)
    return len(delegates), tuple(op["op_name"] for op in left), tuple(dtypes)


def _quant_kind(q) -> tuple[str, int]:
    scales = [] if q is None or q.scale is None else list(q.scale)
    if not scales:
        return "none", 0
    if len(scales) > 1:
        return f"per-channel(axis={q.quantizedDimension})", len(scales)
    return "per-tensor", 1


def audit_ops(tflite: bytes, *, delegation: bool = True, subject: str = "the model") -> OpAudit:
    """Audit a .tflite model.

    Args:
        tflite: the flatbuffer bytes.
        delegation: ask the LiteRT interpreter how XNNPACK partitions the graph (in a child process, so a
            crash there becomes `delegation_error`, one line naming `subject` and the signal).
        subject: the file's name in messages.

    Returns:
        An `OpAudit` (see `.render()` and `.to_dict()`).

    Raises:
        ModelError: the bytes are not a TFLite model.
    """
    model = read_model(tflite)
    types = tensor_type_names()
    counts = collections.Counter()
    custom, flex = set(), set()
    sub = model.subgraphs[0]
    for sg in model.subgraphs:
        for op in sg.operators or []:
            code = model.operatorCodes[op.opcodeIndex]
            name = op_code_name(code)
            counts[name] += 1
            if is_custom(code):
                (flex if name.startswith("Flex") else custom).add(name)
    weights, weight_bytes = [], 0
    for sg in model.subgraphs:
        for t in sg.tensors or []:
            data = buffer_bytes(model, t.buffer)
            if not data:
                continue
            weight_bytes += len(data)
            kind, n = _quant_kind(t.quantization)
            weights.append(WeightQuant(
                name=(t.name.decode() if isinstance(t.name, bytes) else str(t.name)),
                dtype=types.get(t.type, str(t.type)), shape=tuple(int(s) for s in (t.shape if t.shape is not None else [])),
                nbytes=len(data), quantization=kind, n_scales=n))
    partitions, outside, outside_dtypes, err = None, None, None, None
    if delegation:
        try:
            from edge_lowrank.isolate import run_isolated

            partitions, outside, outside_dtypes = run_isolated(
                xnnpack_delegation, bytes(tflite), stage="LiteRT delegation check", subject=subject)
        except Exception as e:  # e.g. a Flex op the interpreter cannot resolve, or a crash of LiteRT
            err = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
    return OpAudit(
        size_bytes=len(tflite),
        weight_bytes=weight_bytes,
        op_counts=dict(counts),
        custom_ops=tuple(sorted(custom)),
        flex_ops=tuple(sorted(flex)),
        input_dtypes=tuple(types.get(sub.tensors[i].type, "?") for i in sub.inputs),
        output_dtypes=tuple(types.get(sub.tensors[i].type, "?") for i in sub.outputs),
        input_shapes=tuple(tuple(int(s) for s in sub.tensors[i].shape) for i in sub.inputs),
        weights=tuple(weights),
        xnnpack_partitions=partitions,
        undelegated_ops=outside,
        metadata_names=tuple(sorted(metadata_entries(model))),
        delegation_error=err,
        undelegated_dtypes=outside_dtypes,
    )


def require_builtin_only(audit: OpAudit, *, allow_custom: bool = False) -> None:
    """Raise `UnsupportedOpsError` if the model holds custom or Flex ops and they are not allowed."""
    if not allow_custom and not audit.builtin_only:
        raise UnsupportedOpsError(
            "The model needs non-builtin ops " + ", ".join(audit.custom_ops + audit.flex_ops)
            + ": a stock LiteRT or TFLM build cannot run it (pass --allow-custom-ops to accept).")


__all__ = ["OpAudit", "WeightQuant", "audit_ops", "require_builtin_only", "KNOWN_UNDELEGATED",
           "UnsupportedOpsError", "xnnpack_delegation"]
