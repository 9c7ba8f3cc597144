"""Does the model run on TFLite Micro, and with how small an arena?

Uses the real TFLM interpreter from the `tflite-micro` Python package (x86_64). TFLM allocates every tensor
in one caller-given arena and refuses to start when it is too small, so the smallest working arena is found
by growing, then bisecting, down to 16 bytes; each try runs one inference. A refusal that is not about the
arena (fp16 weights, hybrid kernels, a missing op) is reported at once instead of searched.

Why every try runs in a forked process, and the whole search in a child (`edge_lowrank.isolate`): TFLM does
not always refuse a too-small arena, it can segfault. Some kernels' Prepare writes through the null pointer
that a failed persistent ("tail") or temporary allocation returned: on a mini-Xception, CONV_2D's per-channel
quantization parameters (`PopulateConvolutionQuantizationParams`, after "Failed to allocate tail memory.
Requested: 512, available 96") at a 16,000-byte arena, while 512, 4,096 and 50,000 bytes failed cleanly; on a
two-conv model, most sizes below 4.7 KB crashed, some without a line of log. No lower bound is safe, so a try
that crashes counts as "too small"; the search process never imports TensorFlow, so the fork is cheap and
safe.
"""

from __future__ import annotations

import dataclasses
import faulthandler
import os
import re
import signal
import tempfile
import time

import numpy as np

from converters.quiet import quiet_fds
from converters.flatbuffer import check_tflite_bytes
from edge_lowrank.errors import EdgeLowrankError

ALIGN = 16
MAX_ARENA = 512 * 1024 * 1024
PROBE_TIMEOUT_S = 60.0


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


def _classify(text: str, error) -> int:
    """Missing bytes (TFLM's own estimate, or 0) when `text`, TFLM's log of a failed try, is about the arena.

    Raises:
        TflmError: the failure is about something else (an op or type TFLM does not support).
    """
    if _ARENA_FAILURE.search(text):
        m = re.search(r"missing: (\d+)", text)
        return int(m.group(1)) if m else 0
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    reason = next((ln for ln in lines if "not supported" in ln or "not true" in ln), None) or \
        (lines[-1] if lines else str(error))
    raise TflmError(f"TFLite Micro cannot run this model: {reason[:240]}")


def _invoke(runtime, data: bytes, arena: int, x=None) -> np.ndarray:
    interp = runtime.Interpreter.from_bytes(data, arena_size=int(arena))
    if x is None:
        x = _sample_input(interp.get_input_details(0))
    interp.set_input(x, 0)
    interp.invoke()
    return np.array(interp.get_output(0))  # a copy: the output lives in the arena, freed with `interp`


def _try_run(runtime, data: bytes, arena: int, x=None):
    """Run one inference with `arena` bytes, in this process (only for arenas known not to crash TFLM).

    Returns:
        (output, None) on success; (None, missing_bytes) when the arena is too small (missing_bytes is
        TFLM's own estimate, or 0).

    Raises:
        TflmError: TFLM refused the model for another reason (an op or type it does not support).
    """
    with quiet_fds(1, 2) as log:
        try:
            return _invoke(runtime, data, arena, x), None
        except RuntimeError as e:
            error = e
            log.seek(0)
            text = log.read().decode("utf-8", "replace")
    return None, _classify(text, error)


def _probe(runtime, data: bytes, arena: int) -> tuple[bool, int, str | None]:
    """(works, missing_bytes, crash): one try with `arena` bytes in a forked process, so that a crash is a "no".

    `crash` names the signal when the try crashed (TFLM's log may be lost with it); a crash counts as "too
    small", and a crash at every size ends in the search's "no arena works" error, which names it. Call this
    only where TensorFlow is not imported (the isolated search child): forking a process that holds
    TensorFlow's threads and locks is not safe.

    Raises:
        TflmError: TFLM refused the model for a reason other than the arena, or hung.
    """
    with tempfile.TemporaryFile() as log:
        pid = os.fork()
        if pid == 0:  # the try: its own address space, so a segfault only ends it
            code = 1
            try:
                faulthandler.disable()  # an expected crash needs no Python traceback dump
                os.dup2(log.fileno(), 1)
                os.dup2(log.fileno(), 2)
                _invoke(runtime, data, arena)
                code = 0
            except RuntimeError:  # TFLM's own log says why; its "failed to allocate tensors" would mislead
                pass
            except BaseException as e:
                os.write(2, f"\n{type(e).__name__}: {e}\n".encode(errors="replace"))
            finally:
                os._exit(code)
        deadline = time.monotonic() + PROBE_TIMEOUT_S
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise TflmError(f"TFLite Micro hung for {PROBE_TIMEOUT_S:g} s with a {arena:,}-byte arena.")
            time.sleep(0.001)
        log.seek(0)
        text = log.read().decode("utf-8", "replace")
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return True, 0, None
    if os.WIFSIGNALED(status):
        m = re.search(r"missing: (\d+)", text)
        return False, int(m.group(1)) if m else 0, signal.Signals(os.WTERMSIG(status)).name
    return False, _classify(text, "failed"), None


def _align(n: int) -> int:
    return (int(n) + ALIGN - 1) // ALIGN * ALIGN


def _search_arena(data: bytes) -> int:
    runtime = _runtime()
    lo, hi = 0, _align(max(4096, len(data) // 4))  # lo: largest size known to fail
    while True:
        ok, missing, crash = _probe(runtime, data, hi)
        if ok:
            break
        if hi >= MAX_ARENA:
            raise TflmError("TFLite Micro cannot run this model with any arena up to 512 MiB"
                            + (f" (it crashed with {crash})." if crash else "."))
        lo, hi = hi, min(MAX_ARENA, max(hi * 2, _align(hi + missing)))
    while hi - lo > ALIGN:
        mid = _align((lo + hi) // 2)
        if mid >= hi or mid <= lo:
            break
        if _probe(runtime, data, mid)[0]:
            hi = mid
        else:
            lo = mid
    return hi


def tflm_arena_size(tflite: bytes, *, subject: str = "the model") -> int:
    """The smallest arena (bytes, a multiple of 16) with which TFLM runs one inference of the model.

    Grows the arena by TFLM's own "missing: N" estimate (at least doubling) until it works, then bisects;
    all of it in a child process (`subject` names the file in its messages).

    Raises:
        TflmError: tflite-micro is missing, or TFLM cannot run the model (an op or type it lacks, e.g.
            fp16 weights or dynamic-range "hybrid" kernels), or no arena up to 512 MiB works.
        CrashError: the search process itself died (one line naming the file and the signal).
    """
    from edge_lowrank.isolate import run_isolated

    data = check_tflite_bytes(tflite)
    return run_isolated(_search_arena, data, stage="TFLM arena search", subject=subject)


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


def _check(data: bytes) -> TflmCheck:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    arena = _search_arena(data)
    runtime = _runtime()
    lite = Interpreter(model_content=data, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    lite.allocate_tensors()
    detail = lite.get_input_details()[0]
    x = _sample_input(detail)
    lite.set_tensor(detail["index"], x)
    lite.invoke()
    want = lite.get_tensor(lite.get_output_details()[0]["index"])
    got = _try_run(runtime, data, arena, x)[0]  # in-process: this arena just worked in a forked try
    if got is None:
        raise TflmError(f"TFLite Micro failed on a second run with the arena it accepted ({arena} bytes).")
    diff = np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))
    return TflmCheck(arena_size=arena, max_abs_diff_vs_litert=float(diff.max()))


def tflm_check(tflite: bytes, *, subject: str = "the model") -> TflmCheck:
    """Find the minimal arena, then compare TFLM's raw output with LiteRT's (reference kernels) on one input.

    Runs in a child process like `tflm_arena_size`.
    """
    from edge_lowrank.isolate import run_isolated

    data = check_tflite_bytes(tflite)
    return run_isolated(_check, data, stage="TFLM check", subject=subject)
