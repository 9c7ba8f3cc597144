"""Timing summaries and the run-loop rules of TFLite's `benchmark_model`, as pure functions.

Keeping the loop rule in one predicate lets the single-model run, the interleaved rounds and the tests agree on
when a phase stops: at least `min_runs` runs AND at least `min_secs` seconds, or as soon as `max_secs` passed.
"""

from __future__ import annotations

import math

import numpy as np

from .results import BenchParams, Stats


def phase_done(count: int, elapsed_s: float, min_runs: int, min_secs: float, max_secs: float | None) -> bool:
    """True when a warm-up or timed phase may stop (the rule of TFLite's benchmark tool)."""
    if max_secs is not None and elapsed_s >= max_secs:
        return True
    return count >= min_runs and elapsed_s >= min_secs


def effective_rounds(params: BenchParams) -> int:
    """Rounds actually run: never more than `num_runs`, so a small run count is not inflated by rounding up."""
    return max(1, min(int(params.rounds), int(params.num_runs) or 1))


def round_quota(params: BenchParams, rounds: int) -> tuple[int, float, float]:
    """(runs, min seconds, max seconds) of one of `rounds` interleaved rounds.

    The quotas add up to the single-run rule: `rounds` rounds together reach at least `num_runs` runs and
    `min_secs` seconds and stay within `max_secs`.
    """
    rounds = max(1, int(rounds))
    return (max(1, math.ceil(params.num_runs / rounds)), params.min_secs / rounds, params.max_secs / rounds)


def summarize(timings_us) -> Stats:
    """count, first, min, max, mean, population std, p5, median, p95 of timings in microseconds."""
    a = np.asarray(timings_us, dtype=np.float64)
    if a.size == 0:
        raise ValueError("summarize() needs at least one timing.")
    p5, p50, p95 = np.percentile(a, [5, 50, 95])
    return Stats(count=int(a.size), first=float(a[0]), min=float(a.min()), max=float(a.max()),
                 mean=float(a.mean()), std=float(a.std()), p5=float(p5), median=float(p50), p95=float(p95))
