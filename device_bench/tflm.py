"""The microcontroller target: run a .tflite with the TFLM interpreter (PyPI `tflite-micro`) on the host.

What a firmware engineer needs before flashing: the smallest tensor arena that works (found by bisection to
16 bytes, TFLM's alignment), the flash size (the flatbuffer itself), the ops TFLM lacks, and whether TFLM's
outputs agree with LiteRT's. A too-small arena can SEGFAULT inside TFLM instead of raising, so every probe runs
in a forked process: a failed probe is a clean "no", never a dead harness.
"""

from __future__ import annotations

import os
import re
import signal
import tempfile
import time

import numpy as np

from . import _interpreter
from .errors import BenchError
from .inputs import quantize_input, random_inputs
from .measure import _check_tensor_sizes, check_model_file
from .results import BenchParams, BenchResult
from .stats import phase_done, summarize
from .sysinfo import env_tag, peak_rss_mb

ALIGN = 16
MAX_ARENA = 1 << 30
PROBE_TIMEOUT_S = 60.0
_MISSING_OP = re.compile(r"Didn't find op for builtin opcode '([A-Z0-9_]+)'|"
                         r"Failed to get registration from op code ([A-Z0-9_]+)")


def _tflm():
    try:
        import tflite_micro
    except ImportError as e:
        raise BenchError(f"The tflm target needs the tflite-micro package (x86_64 only): "
                         f"pip install tflite-micro ({e}).") from None
    return tflite_micro.runtime.Interpreter


def tflm_version() -> str:
    try:
        import tflite_micro
    except ImportError:  # pragma: no cover
        return "tflite-micro missing"
    return f"tflite-micro {tflite_micro.__version__}"


def _detail(d: dict) -> dict:
    """TFLM's tensor details in the shape `quantize_input` takes (LiteRT's layout)."""
    q = d.get("quantization_parameters") or {}
    scales, zps = list(q.get("scales", [])), list(q.get("zero_points", []))
    return {"shape": [int(s) for s in d["shape"]], "dtype": np.dtype(d["dtype"]), "name": d.get("name", ""),
            "quantization": (float(scales[0]) if scales else 0.0, int(zps[0]) if zps else 0)}


def _run_once(model: bytes, arena: int, inputs: list[np.ndarray]) -> list[np.ndarray]:
    interp = _tflm().from_bytes(model, arena_size=arena)
    for i, x in enumerate(inputs):
        interp.set_input(x, i)
    interp.invoke()
    outs, i = [], 0
    while True:
        try:
            outs.append(np.array(interp.get_output(i)))
        except Exception:
            return outs
        i += 1
        if i > 64:
            return outs


def probe_arena(model: bytes, arena: int, inputs: list[np.ndarray], timeout_s: float = PROBE_TIMEOUT_S):
    """(works, message): build the interpreter with `arena` bytes and invoke once, in a forked process."""
    err = tempfile.TemporaryFile()
    pid = os.fork()
    if pid == 0:  # the probe: its own address space, so a segfault only kills it
        code = 1
        try:
            os.dup2(err.fileno(), 2)
            _run_once(model, arena, inputs)
            code = 0
        except BaseException as e:
            os.write(2, f"\n{type(e).__name__}: {e}\n".encode(errors="replace"))
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout_s
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            err.close()
            return False, f"timed out after {timeout_s:g} s"
        time.sleep(0.002)
    err.seek(0)
    text = err.read().decode(errors="replace")
    err.close()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if os.WIFSIGNALED(status):
        sig = signal.Signals(os.WTERMSIG(status)).name
        return False, f"crashed ({sig})" + (f": {lines[-1][:200]}" if lines else "")
    if os.WEXITSTATUS(status) == 0:
        return True, ""
    return False, " | ".join(lines[-3:])[:400] or "failed"


class MissingOpsError(BenchError):
    """TFLM has no kernel for some of the model's ops (`ops`)."""

    def __init__(self, ops: list[str]):
        super().__init__(f"TFLM lacks kernels for: {', '.join(ops)}.")
        self.ops = ops


def missing_ops(message: str) -> list[str]:
    """Op names TFLM says it has no kernel for, parsed from its error output."""
    return sorted({a or b for a, b in _MISSING_OP.findall(message)})


def find_arena(model: bytes, inputs: list[np.ndarray], start: int | None = None):
    """(smallest working arena in bytes, message of the probe one step below): bisection on 16-byte steps."""
    hi = max(ALIGN, (start or len(model) * 2) // ALIGN * ALIGN)
    ok, msg = probe_arena(model, hi, inputs)
    while not ok:
        if missing_ops(msg):
            raise MissingOpsError(missing_ops(msg))
        if hi >= MAX_ARENA:
            raise BenchError(f"TFLM cannot run the model with any arena up to {MAX_ARENA >> 20} MiB: {msg}")
        hi *= 4
        ok, msg = probe_arena(model, hi, inputs)
    lo, lo_msg = 0, "an empty arena"
    while hi - lo > ALIGN:
        mid = (lo + hi) // 2 // ALIGN * ALIGN
        if mid <= lo:
            mid = lo + ALIGN
        ok, msg = probe_arena(model, mid, inputs)
        if ok:
            hi = mid
        else:
            lo, lo_msg = mid, msg
    return hi, lo_msg


def _agreement(litert_outs: list[np.ndarray], tflm_outs: list[np.ndarray], details: list[dict]) -> dict:
    """How far TFLM's outputs are from LiteRT's on the same inputs (in output units and quanta)."""
    max_abs, max_quanta, same_argmax, exact, n = 0.0, 0, 0, 0, 0
    for a, b in zip(litert_outs, tflm_outs):
        n += 1
        exact += int(np.array_equal(a, b))
        same_argmax += int(np.argmax(a.reshape(-1)) == np.argmax(b.reshape(-1)))
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
        scale = details[0]["quantization"][0] if details else 0.0
        if np.issubdtype(a.dtype, np.integer) and scale:
            max_quanta = max(max_quanta, int(diff.max()))
            diff = diff * scale
        max_abs = max(max_abs, float(diff.max()))
    return {"samples": n, "max_abs_diff": max_abs, "max_diff_quanta": max_quanta,
            "argmax_agreement": same_argmax / max(1, n), "bit_exact_fraction": exact / max(1, n)}


def measure_tflm(model_path, params: BenchParams | None = None, data=None, *, agreement_samples: int = 20) -> BenchResult:
    """Arena, flash size, missing ops, timing of TFLM's `invoke()` on the host, agreement with LiteRT, accuracy.

    Timings are of TFLM's kernels on THIS CPU (useful as ratios, not microcontroller latencies).
    """
    params = params or BenchParams()
    size = check_model_file(model_path)
    with open(model_path, "rb") as f:
        model = f.read()
    Interpreter = _tflm()
    # Inputs from LiteRT's view of the model (it validates the flatbuffer before TFLM touches it).
    try:
        ref = _interpreter.make_interpreter(str(model_path), num_threads=1, xnnpack=False)
        _check_tensor_sizes(ref, str(model_path))
        ref.allocate_tensors()
    except BenchError:
        raise
    except (ValueError, RuntimeError) as e:
        raise BenchError(f"{model_path}: LiteRT cannot load it: {' '.join(str(e).split())[:300]}") from None
    in_details = ref.get_input_details()
    out_details = ref.get_output_details()
    inputs = random_inputs(in_details)
    try:
        arena, below_msg = find_arena(model, inputs)
    except MissingOpsError as e:  # a clean row that lists the ops, so the user knows what to rewrite
        return BenchResult(model=str(model_path), target="tflm", model_size_mb=size / 1e6, error=str(e),
                           env=env_tag(runtime=tflm_version(), num_threads=1, xnnpack=None),
                           params=dict(vars(params)), extra={"flash_bytes": size, "missing_ops": e.ops})

    t0 = time.perf_counter()
    interp = Interpreter.from_bytes(model, arena_size=arena)
    init_us = (time.perf_counter() - t0) * 1e6
    tdetails = [_detail(interp.get_input_details(i)) for i in range(len(in_details))]

    def invoke_us(xs) -> float:
        for i, x in enumerate(xs):
            interp.set_input(x, i)  # TFLM's arena reuses the input buffer: set it before every invoke
        t = time.perf_counter_ns()
        interp.invoke()
        return (time.perf_counter_ns() - t) / 1e3

    def loop(min_runs, min_secs, max_secs):
        out, start = [], time.perf_counter()
        while not phase_done(len(out), time.perf_counter() - start, min_runs, min_secs, max_secs):
            out.append(invoke_us(inputs))
        return out

    warm = loop(max(1, params.warmup_runs), params.warmup_min_secs, params.max_secs)
    timed = loop(max(1, params.num_runs), params.min_secs, params.max_secs)

    # Agreement with LiteRT (no delegate: reference-like builtin kernels) on data samples or random inputs.
    rng = np.random.default_rng(1)
    if data is not None and len(in_details) == 1:
        samples = [[quantize_input(x, in_details[0])] for x in data.x[:agreement_samples]]
    else:
        samples = [random_inputs(in_details, seed=int(rng.integers(1 << 30))) for _ in range(agreement_samples)]
    lit, mic = [], []
    for xs in samples:
        for d, x in zip(in_details, xs):
            ref.set_tensor(d["index"], x)
        ref.invoke()
        lit.append(ref.get_tensor(out_details[0]["index"]).copy())
        invoke_us(xs)
        mic.append(np.array(interp.get_output(0)).reshape(lit[-1].shape))
    agree = _agreement(lit, mic, [{"quantization": out_details[0]["quantization"]}])

    accuracy = confusion = None
    if data is not None and data.y is not None:
        if len(in_details) != 1:
            raise BenchError(f"{model_path} has {len(in_details)} inputs; accuracy needs exactly one.")
        n_classes = max(int(np.prod(out_details[0]["shape"])), int(data.y.max()) + 1)
        cm = np.zeros((n_classes, n_classes), dtype=np.int64)
        for x, y in zip(data.x, data.y):
            invoke_us([quantize_input(x, tdetails[0])])
            cm[int(y), int(np.argmax(np.array(interp.get_output(0)).reshape(-1)))] += 1
        accuracy, confusion = float(np.trace(cm) / len(data.y)), cm.tolist()

    return BenchResult(
        model=str(model_path), target="tflm", model_size_mb=size / 1e6, init_us=init_us,
        first_inference_us=warm[0], warmup_mean_us=float(np.mean(warm)), inference_us=summarize(timed),
        peak_rss_mb=peak_rss_mb(), arena_bytes=arena, accuracy=accuracy, confusion=confusion,
        env=env_tag(runtime=tflm_version(), num_threads=1, xnnpack=None),
        params=dict(vars(params)), samples_us=timed, round_medians_us=[float(np.median(timed))],
        extra={"flash_bytes": size, "arena_step_bytes": ALIGN, "arena_below_fails": below_msg,
               "missing_ops": [], "tflm_vs_litert": agree,
               "note": "invoke() timings are TFLM's kernels on the host CPU, not on a microcontroller"},
    )
