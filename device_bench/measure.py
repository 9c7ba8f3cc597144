"""Measure one .tflite file with LiteRT in this process: init, first inference, warm-up, timed `invoke()` runs.

`measure()` is a pure function (no processes, no ssh) so the host worker, the QEMU guest script and a board
all produce numbers the same way. `ModelRunner` splits it into phases so that several models can be timed in
interleaved rounds by `host.bench_models`. Only `invoke()` is timed, as in TFLite's benchmark tool.
"""

from __future__ import annotations

import os
import time

import numpy as np

from . import _interpreter
from .errors import BenchError
from .inputs import quantize_input, random_inputs
from .results import BenchParams, BenchResult
from .stats import phase_done, summarize
from .sysinfo import env_tag, peak_rss_mb, rss_mb

TFLITE_MAGIC = b"TFL3"


def check_model_file(model_path) -> int:
    """Size in bytes of a plausible .tflite file; BenchError for a missing, empty or wrong-magic file."""
    path = str(model_path)
    if not os.path.isfile(path):
        raise BenchError(f"Model file {path} does not exist.")
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) < 8:
        raise BenchError(f"{path} is not a .tflite model: only {size} bytes.")
    if head[4:8] != TFLITE_MAGIC:
        raise BenchError(f"{path} is not a .tflite model: file identifier {head[4:8]!r}, expected {TFLITE_MAGIC!r}.")
    return size


def _memory_limit_bytes() -> int:
    """Half the physical memory: tensors beyond it mean an absurd shape, not a model worth allocating."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError):  # pragma: no cover
        return 8 << 30


def _check_tensor_sizes(interp, path: str) -> None:
    total = 0
    for t in interp.get_tensor_details():
        shape = [int(d) for d in t["shape"]]
        if any(d < 0 for d in shape):
            raise BenchError(f"{path}: tensor `{t['name']}` has a negative dimension {shape}.")
        total += int(np.prod(shape, dtype=np.float64)) * np.dtype(t["dtype"]).itemsize
    limit = _memory_limit_bytes()
    if total > limit:
        raise BenchError(f"{path}: its tensors need {total / 2**30:.1f} GiB, more than half this machine's "
                         f"memory ({limit / 2**30:.1f} GiB): absurd tensor shapes?")


class ModelRunner:
    """One model loaded once (the init phase is timed in the constructor); then warm-up and timed rounds."""

    def __init__(self, model_path, params: BenchParams, inputs: list[np.ndarray] | None = None):
        self.path = str(model_path)
        self.params = params
        self.size = check_model_file(self.path)
        self.rss_before_mb = rss_mb()
        t0 = time.perf_counter()
        try:
            self.interp = _interpreter.make_interpreter(self.path, num_threads=params.num_threads,
                                                        xnnpack=params.xnnpack)
        except (ValueError, RuntimeError) as e:
            raise BenchError(f"{self.path}: LiteRT cannot load it: {_first_line(e)}") from None
        _check_tensor_sizes(self.interp, self.path)
        try:
            self.interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise BenchError(f"{self.path}: LiteRT cannot allocate its tensors: {_first_line(e)}") from None
        self.init_us = (time.perf_counter() - t0) * 1e6
        self.rss_after_init_mb = rss_mb()
        self.partitions, self.outside, self.outside_ops = _interpreter.delegation(self.interp)
        if not params.xnnpack:
            self.partitions = 0
        self.input_details = self.interp.get_input_details()
        self.output_details = self.interp.get_output_details()
        self.set_inputs(inputs if inputs is not None else random_inputs(self.input_details))
        self.first_us: float | None = None
        self.warmup_us: list[float] = []
        self.timings_us: list[float] = []
        self.round_medians_us: list[float] = []
        self.peak_rss_mb: float | None = None

    def set_inputs(self, arrays: list[np.ndarray]) -> None:
        if len(arrays) != len(self.input_details):
            raise BenchError(f"{self.path} has {len(self.input_details)} inputs; {len(arrays)} were given.")
        for detail, a in zip(self.input_details, arrays):
            if a.dtype != np.dtype(detail["dtype"]):
                a = quantize_input(a, detail)
            self.interp.set_tensor(detail["index"], a.reshape([int(d) for d in detail["shape"]]))

    def _invoke_us(self) -> float:
        t0 = time.perf_counter_ns()
        self.interp.invoke()
        return (time.perf_counter_ns() - t0) / 1e3

    def _loop(self, min_runs: int, min_secs: float, max_secs: float | None) -> list[float]:
        out: list[float] = []
        start = time.perf_counter()
        while not phase_done(len(out), time.perf_counter() - start, min_runs, min_secs, max_secs):
            out.append(self._invoke_us())
        return out

    def warmup(self) -> None:
        """First inference plus warm-up (its first run is the first inference, as in TFLite's tool)."""
        p = self.params
        try:
            self.warmup_us = self._loop(max(1, p.warmup_runs), p.warmup_min_secs, p.max_secs)
        except (ValueError, RuntimeError) as e:
            raise BenchError(f"{self.path}: invoke() failed: {_first_line(e)}") from None
        self.first_us = self.warmup_us[0]

    def timed_round(self, min_runs: int, min_secs: float, max_secs: float | None) -> list[float]:
        """One round of timed runs; its timings are appended to the model's."""
        times = self._loop(max(1, min_runs), min_secs, max_secs)
        self.timings_us.extend(times)
        self.round_medians_us.append(float(np.median(times)))
        self.peak_rss_mb = peak_rss_mb()  # peak up to the end of the timed runs (accuracy data comes later)
        return times

    def outputs(self) -> list[np.ndarray]:
        return [self.interp.get_tensor(d["index"]) for d in self.output_details]

    def result(self, target: str = "host") -> BenchResult:
        p = self.params
        return BenchResult(
            model=self.path, target=target, model_size_mb=self.size / 1e6,
            init_us=self.init_us, first_inference_us=self.first_us,
            warmup_mean_us=float(np.mean(self.warmup_us)) if self.warmup_us else None,
            inference_us=summarize(self.timings_us) if self.timings_us else None,
            rss_after_init_mb=self.rss_after_init_mb, peak_rss_mb=self.peak_rss_mb if self.peak_rss_mb is not None else peak_rss_mb(),
            delegate_partitions=self.partitions, nodes_outside_delegate=self.outside,
            env=env_tag(runtime=_interpreter.runtime_version(), num_threads=p.num_threads, xnnpack=p.xnnpack),
            params=dict(vars(p)),
            samples_us=list(self.timings_us), round_medians_us=list(self.round_medians_us),
            extra={"ops_outside_delegate": self.outside_ops, "rss_before_load_mb": self.rss_before_mb,
                   "warmup_runs_done": len(self.warmup_us)},
        )


def evaluate(runner: ModelRunner, x: np.ndarray, y: np.ndarray) -> tuple[float, list[list[int]]]:
    """Top-1 accuracy and confusion matrix (rows: true class, columns: predicted), one image at a time.

    Images are quantized with the model's own input scale and zero point; the argmax of the first output is
    the prediction (quantization keeps the order, so no dequantization is needed).
    """
    if len(runner.input_details) != 1:
        raise BenchError(f"{runner.path} has {len(runner.input_details)} inputs; accuracy needs exactly one.")
    detail = runner.input_details[0]
    out_index = runner.output_details[0]["index"]
    n_out = int(np.prod(runner.output_details[0]["shape"]))
    n_classes = max(n_out, int(y.max()) + 1)
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    shape = [int(d) for d in detail["shape"]]
    for xi, yi in zip(x, y):
        runner.interp.set_tensor(detail["index"], quantize_input(xi, detail).reshape(shape))
        runner.interp.invoke()
        pred = int(np.argmax(runner.interp.get_tensor(out_index).reshape(-1)))
        confusion[int(yi), pred] += 1
    return float(np.trace(confusion) / max(1, len(y))), confusion.tolist()


def measure(model_path, params: BenchParams | None = None, inputs: list[np.ndarray] | None = None,
            *, target: str = "host") -> BenchResult:
    """Benchmark one model in this process with TFLite's loop rules (warm-up, then timed runs).

    Args:
        model_path: the .tflite file.
        params: loop counts, seconds, threads, XNNPACK on/off (defaults of TFLite's benchmark tool).
        inputs: one array per model input (float arrays are quantized for integer inputs); seeded random
            tensors when None.
    Returns:
        A BenchResult (no error field: problems raise BenchError).
    """
    params = params or BenchParams()
    runner = ModelRunner(model_path, params, inputs)
    runner.warmup()
    runner.timed_round(params.num_runs, params.min_secs, params.max_secs)
    return runner.result(target)


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0][:300] if lines else type(e).__name__
