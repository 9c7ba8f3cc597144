"""Speedup of each model against a baseline, with a seeded bootstrap 95% confidence interval.

Under emulation (QEMU) the ratio of instructions per inference is used instead of wall time: it is exact.
When both models were timed in the same interleaved rounds, round i of each saw the same machine state, so the
bootstrap resamples rounds in pairs (ratio of the medians of per-round medians): noise shared by a round
cancels. Otherwise it resamples each model's raw timings independently (ratio of medians).
"""

from __future__ import annotations

import numpy as np

from .errors import BenchError
from .results import BenchResult

N_BOOT = 2000
SEED = 0
MIN_PAIRED_ROUNDS = 3


def _find_baseline(results: list[BenchResult], baseline) -> int:
    if isinstance(baseline, (int, np.integer)) and not isinstance(baseline, bool):
        if not 0 <= baseline < len(results):
            raise BenchError(f"Invalid baseline index {baseline}: there are {len(results)} results.")
        return int(baseline)
    want = str(baseline)
    for key in (lambda r: r.model, lambda r: r.label):
        for i, r in enumerate(results):
            if key(r) == want:
                return i
    import os

    for i, r in enumerate(results):
        if os.path.abspath(r.model) == os.path.abspath(want) or os.path.basename(r.model) == want:
            return i
    raise BenchError(f"Baseline `{want}` is not among the benchmarked models: "
                     f"{', '.join(r.label for r in results)}.")


def speedup_ci(base: BenchResult, other: BenchResult, *, n_boot: int = N_BOOT, seed: int = SEED):
    """(speedup, ci_low, ci_high, method): speedup = baseline median / model median (> 1 means faster)."""
    if base.emulated and other.emulated and base.instructions_per_inference and other.instructions_per_inference:
        # Emulated wall time is no device figure; instruction counts are deterministic: no interval needed.
        ratio = base.instructions_per_inference / other.instructions_per_inference
        return float(ratio), float(ratio), float(ratio), "ratio of instructions per inference (emulated, exact)"
    rng = np.random.default_rng(seed)
    rb, ro = base.round_medians_us or [], other.round_medians_us or []
    if len(rb) == len(ro) >= MIN_PAIRED_ROUNDS:
        rb, ro = np.asarray(rb), np.asarray(ro)
        point = float(np.median(rb) / np.median(ro))
        idx = rng.integers(0, len(rb), size=(n_boot, len(rb)))
        boot = np.median(rb[idx], axis=1) / np.median(ro[idx], axis=1)
        method = "paired bootstrap over interleaved rounds"
    else:
        sb, so = np.asarray(base.samples_us or []), np.asarray(other.samples_us or [])
        if sb.size == 0 or so.size == 0:
            raise BenchError("No timings to compare.")
        point = float(np.median(sb) / np.median(so))
        boot = (np.median(sb[rng.integers(0, sb.size, size=(n_boot, sb.size))], axis=1)
                / np.median(so[rng.integers(0, so.size, size=(n_boot, so.size))], axis=1))
        method = "bootstrap of the ratio of medians"
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return point, float(lo), float(hi), method


def compare(results: list[BenchResult], baseline=0, *, n_boot: int = N_BOOT, seed: int = SEED) -> list[dict]:
    """One row per result: its median latency, the baseline's, speedup and 95% CI (or why there is none).

    Args:
        results: from `bench_models` (ideally one interleaved run).
        baseline: index into `results`, or a model path / label / file name.
    """
    b = _find_baseline(results, baseline)
    base = results[b]
    rows = []
    for r in results:
        row = {"model": r.model, "label": r.label, "baseline": base.label, "median_us": None,
               "baseline_median_us": base.inference_us.median if base.inference_us else None,
               "speedup": None, "ci_low": None, "ci_high": None, "method": None, "error": None}
        if base.error or base.inference_us is None:
            row["error"] = f"baseline has no timings ({base.error or 'not timed'})"
        elif r.error or r.inference_us is None:
            row["error"] = r.error or "not timed"
        else:
            row["median_us"] = r.inference_us.median
            try:
                row["speedup"], row["ci_low"], row["ci_high"], row["method"] = speedup_ci(
                    base, r, n_boot=n_boot, seed=seed)
            except BenchError as e:
                row["error"] = str(e)
        rows.append(row)
    return rows
