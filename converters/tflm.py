"""Does the model run on TFLite Micro, and with how small an arena?

Uses the real TFLM interpreter from the `tflite-micro` Python package (x86_64). TFLM allocates every tensor
in one caller-given arena and refuses to start when it is too small, so the smallest working arena is found
by doubling, then bisecting, down to 16 bytes; each try runs one inference.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from converters.audit import quiet_fds
from converters.flatbuffer import check_tflite_bytes
from edge_lowrank.errors import EdgeLowrankError

ALIGN = 16
MAX_ARENA = 512 * 1024 * 1024


class TflmError(EdgeLowrankError):
    """TFLite Micro cannot run the model (an op it lacks, or no arena size works)."""


def _runtime():
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        raise TflmError("The TFLM check needs the `tflite-micro` package (pip install tflite-micro; "
                        "x86_64 Linux only).") from None
    return runtime


def _sample_input(detail: dict) -> np.ndarray:
    shape = tuple(int(d) for d in detail["shape"])
    dtype = np.dtype(detail["dtype"])
    rng = np.random.default_rng(0)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    return rng.random(shape).astype(dtype)


def _try_run(runtime, data: bytes, arena: int, x=None):
    """Run one inference with `arena` bytes; return the output, or None if TFLM refused."""
    try:
        with quiet_fds(1, 2):
            interp = runtime.Interpreter.from_bytes(data, arena_size=int(arena))
            if x is None:
                x = _sample_input(interp.get_input_details(0))
            interp.set_input(x, 0)
            interp.invoke()
            return interp.get_output(0)
    except RuntimeError:
        return None


def tflm_arena_size(tflite: bytes) -> int:
    """The smallest arena (bytes, a multiple of 16) with which TFLM runs one inference of the model.

    Raises:
        TflmError: tflite-micro is missing, or the model does not run at any size up to 512 MiB
            (typically an op TFLM lacks, e.g. fp16 weights or a Flex op).
    """
    data = check_tflite_bytes(tflite)
    runtime = _runtime()
    hi = max(ALIGN, 1 << max(12, (len(data) // 4).bit_length()))
    while _try_run(runtime, data, hi) is None:
        if hi >= MAX_ARENA:
            raise TflmError("TFLite Micro cannot run this model with any arena up to 512 MiB "
                            "(it probably uses an op or type TFLM does not support).")
        hi *= 2
    lo = 0  # largest size known to fail (0: none tried)
    while hi - lo > ALIGN:
        mid = (lo + hi) // 2 // ALIGN * ALIGN
        if mid <= lo:
            break
        if _try_run(runtime, data, mid) is None:
            lo = mid
        else:
            hi = mid
    return hi


@dataclasses.dataclass(frozen=True)
class TflmCheck:
    """TFLM ran the model: its minimal arena, and how its output compares with LiteRT's on one input."""

    arena_size: int
    max_abs_diff_vs_litert: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def render(self) -> str:
        return (f"tflm: runs, minimal arena {self.arena_size:,} bytes; "
                f"max |tflm - litert| on one input: {self.max_abs_diff_vs_litert:g} (raw output units)")


def tflm_check(tflite: bytes) -> TflmCheck:
    """Find the minimal arena, then compare TFLM's raw output with LiteRT's (reference kernels) on one input."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    data = check_tflite_bytes(tflite)
    arena = tflm_arena_size(data)
    runtime = _runtime()
    lite = Interpreter(model_content=data, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    lite.allocate_tensors()
    detail = lite.get_input_details()[0]
    x = _sample_input(detail)
    lite.set_tensor(detail["index"], x)
    lite.invoke()
    want = lite.get_tensor(lite.get_output_details()[0]["index"])
    got = _try_run(runtime, data, arena, x)
    if got is None:
        raise TflmError(f"TFLite Micro failed on a second run with the arena it accepted ({arena} bytes).")
    diff = np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))
    return TflmCheck(arena_size=arena, max_abs_diff_vs_litert=float(diff.max()))
