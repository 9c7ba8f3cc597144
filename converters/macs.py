"""MACs of a .tflite recounted from its own ops and tensor shapes: an independent check of the graph count.

`edge_lowrank.profile` counts MACs from the Keras graph; this module counts them from what the converter
wrote, so a wrong node walk, a missed layer type or a converter rewrite shows as a mismatch. Any precision
works (the count reads shapes only). Imports no TensorFlow.

Per op, with shapes as TFLite stores them (NHWC, batch included, so counts are per invocation):
  CONV_2D            out elements * kh*kw*cin/groups       filter (cout, kh, kw, cin/groups)
  CONV_3D            out elements * kd*kh*kw*cin           filter (kd, kh, kw, cin, cout)
  DEPTHWISE_CONV_2D  out elements * kh*kw                  filter (1, kh, kw, cout)
  FULLY_CONNECTED    out elements * k                      weights (n, k)
  BATCH_MATMUL       out elements * k                      k the contracted dimension of the first input
  TRANSPOSE_CONV     in positions * kh*kw*cin*cout          every input position scatters the whole kernel
  CONV_3D_TRANSPOSE  in positions * kd*kh*kw*cin*cout
Other ops count 0. Only the main subgraph (0) is counted.

The module is not named `tflite_macs`: importing a submodule of that name would shadow the function
`converters.tflite_macs` on the package.
"""

from __future__ import annotations

import collections
import dataclasses
import os
from pathlib import Path

import numpy as np

from converters.flatbuffer import op_code_name, read_model
from edge_lowrank.errors import ModelError

MAC_OPS = ("CONV_2D", "CONV_3D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL", "TRANSPOSE_CONV",
           "CONV_3D_TRANSPOSE")


@dataclasses.dataclass(frozen=True)
class OpMacs:
    """One MAC-doing op of the main subgraph."""

    index: int  # operator index in subgraph 0
    op: str
    macs: int
    output_shape: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class TfliteMacs:
    """The result of `tflite_macs`: MAC-doing ops in graph order."""

    ops: tuple[OpMacs, ...]
    # True when an input has a dynamic dimension other than batch (shape signature -1): the stored shapes
    # then hold 1 there and the counts are for that placeholder size.
    variable_shape: bool = False

    @property
    def total(self) -> int:
        return sum(o.macs for o in self.ops)

    def by_type(self) -> dict[str, int]:
        """MACs per op type, largest first."""
        counts = collections.Counter()
        for o in self.ops:
            counts[o.op] += o.macs
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def to_dict(self) -> dict:
        return {"total": self.total, "by_type": self.by_type(), "variable_shape": self.variable_shape,
                "ops": [dataclasses.asdict(o) for o in self.ops]}

    def render(self) -> str:
        parts = ", ".join(f"{k} {_short(v)}" for k, v in self.by_type().items()) or "none"
        note = " (a dynamic input size counted as 1)" if self.variable_shape else ""
        return f"macs: {self.total:,} per invocation{note}: {parts}"


def _short(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def _shape(tensors, index) -> tuple[int, ...]:
    if index is None or index < 0 or index >= len(tensors) or tensors[index].shape is None:
        raise ModelError(f"Corrupt TFLite model: an op refers to tensor {index}, which has no shape.")
    return tuple(int(d) for d in tensors[index].shape)


def _op_macs(name: str, op, tensors) -> int:
    ins = list(op.inputs if op.inputs is not None else [])
    out = _shape(tensors, op.outputs[0])
    n_out = int(np.prod(out))
    if name == "CONV_2D":
        return n_out * int(np.prod(_shape(tensors, ins[1])[1:]))
    if name == "CONV_3D":
        f = _shape(tensors, ins[1])
        return n_out * int(np.prod(f[:-1]))
    if name == "DEPTHWISE_CONV_2D":
        f = _shape(tensors, ins[1])
        return n_out * int(np.prod(f[1:3]))
    if name == "FULLY_CONNECTED":
        return n_out * _shape(tensors, ins[1])[-1]
    if name == "BATCH_MATMUL":
        x = _shape(tensors, ins[0])
        adj_x = bool(getattr(op.builtinOptions, "adjX", False))
        return n_out * (x[-2] if adj_x else x[-1])
    if name in ("TRANSPOSE_CONV", "CONV_3D_TRANSPOSE"):  # inputs: output_shape, weights, input[, bias]
        x = _shape(tensors, ins[2])
        return int(np.prod(x[:-1])) * int(np.prod(_shape(tensors, ins[1])))
    return 0


def tflite_macs(tflite) -> TfliteMacs:
    """MACs per invocation of a .tflite (bytes, or a path), per op, from the flatbuffer alone.

    Raises:
        ModelError: the file does not exist, or is not a (readable) TFLite flatbuffer.

    Example:
        >>> m = tflite_macs("model.tflite")  # doctest: +SKIP
        >>> m.total, m.by_type()  # doctest: +SKIP
        (22705920, {'CONV_2D': 22690000, 'FULLY_CONNECTED': 15920})
    """
    if isinstance(tflite, (str, os.PathLike)):
        path = Path(tflite)
        if not path.is_file():
            raise ModelError(f"Model file {path} does not exist.")
        tflite = path.read_bytes()
    model = read_model(tflite)
    graph = model.subgraphs[0]
    tensors = graph.tensors
    ops = []
    for i, op in enumerate(graph.operators or []):
        name = op_code_name(model.operatorCodes[op.opcodeIndex])
        if name not in MAC_OPS:
            continue
        try:
            macs = _op_macs(name, op, tensors)
        except (IndexError, TypeError):
            raise ModelError(f"Corrupt TFLite model: op {i} ({name}) lacks the inputs its MAC count needs.") from None
        ops.append(OpMacs(i, name, int(macs), _shape(tensors, op.outputs[0])))
    variable = False
    for t in graph.inputs:
        sig = tensors[t].shapeSignature
        variable |= sig is not None and any(int(d) < 0 for d in list(sig)[1:])
    return TfliteMacs(tuple(ops), variable)
