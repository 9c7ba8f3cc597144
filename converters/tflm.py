"""Does the model run on TFLite Micro, and with how small an arena?

Uses the real TFLM interpreter from the `tflite-micro` Python package (x86_64). TFLM allocates every tensor
in one caller-given arena and refuses to start when it is too small, so the smallest working arena is found
by growing, then bisecting, down to 16 bytes; each try runs one inference. A refusal that is not about the
arena (fp16 weights, hybrid kernels, a missing op) is reported at once instead of searched.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from converters.quiet import quiet_fds
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


_ARENA_FAILURE = re.compile(r"Failed to allocate|Failed to resize buffer|missing: \d+|arena", re.I)


def _try_run(runtime, data: bytes, arena: int, x=None):
    """Run one inference with `arena` bytes.

    Returns:
        (output, None) on success; (None, missing_bytes) when the arena is too small (missing_bytes is
        TFLM's own estimate, or 0).

    Raises:
        TflmError: TFLM refused the model for another reason (an op or type it does not support).
    """
    with quiet_fds(1, 2) as log:
        try:
            interp = runtime.Interpreter.from_bytes(data, arena_size=int(arena))
            if x is None:
                x = _sample_input(interp.get_input_details(0))
            interp.set_input(x, 0)
            interp.invoke()
            return interp.get_output(0), None
        except RuntimeError as e:
            error = e
            log.seek(0)
            text = log.read().decode("utf-8", "replace")
    if _ARENA_FAILURE.search(text):
        m = re.search(r"missing: (\d+)", text)
        return None, int(m.group(1)) if m else 0
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    reason = next((ln for ln in lines if "not supported" in ln or "not true" in ln), None) or \
        (lines[-1] if lines else str(error))
    raise TflmError(f"TFLite Micro cannot run this model: {reason[:240]}")


def _align(n: int) -> int:
    return (int(n) + ALIGN - 1) // ALIGN * ALIGN


def tflm_arena_size(tflite: bytes) -> int:
    """The smallest arena (bytes, a multiple of 16) with which TFLM runs one inference of the model.

    Grows the arena by TFLM's own "missing: N" estimate (at least doubling) until it works, then bisects.

    Raises:
        TflmError: tflite-micro is missing, or TFLM cannot run the model (an op or type it lacks, e.g.
            fp16 weights or dynamic-range "hybrid" kernels), or no arena up to 512 MiB works.
    """
    data = check_tflite_bytes(tflite)
    runtime = _runtime()
    lo, hi = 0, _align(max(4096, len(data) // 4))  # lo: largest size known to fail
    while True:
        out, missing = _try_run(runtime, data, hi)
        if out is not None:
            break
        if hi >= MAX_ARENA:
            raise TflmError("TFLite Micro cannot run this model with any arena up to 512 MiB.")
        lo, hi = hi, min(MAX_ARENA, max(hi * 2, _align(hi + missing)))
    while hi - lo > ALIGN:
        mid = _align((lo + hi) // 2)
        if mid >= hi or mid <= lo:
            break
        if _try_run(runtime, data, mid)[0] is None:
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
    got = _try_run(runtime, data, arena, x)[0]
    if got is None:
        raise TflmError(f"TFLite Micro failed on a second run with the arena it accepted ({arena} bytes).")
    diff = np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))
    return TflmCheck(arena_size=arena, max_abs_diff_vs_litert=float(diff.max()))
