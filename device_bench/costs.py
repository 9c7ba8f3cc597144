"""Per-op-shape costs: many small .tflite files (one op or one factor chain each) timed side by side.

`edge_lowrank.auto` builds one micro model per candidate (the original layer, or the factor layers a scheme
would put in its place, at one rank) and asks this module what each costs on the target, so that ranks and
schemes are chosen on measured latency, not on MACs. The micro models are tiny (tens of microseconds), so
they run in one process, all loaded at once and timed in interleaved rounds (A B C A B C ...), each model's
figure the median of its round medians: a burst of load on a shared machine hits every model alike instead
of one. On `qemu:<profile>` the figure is the exact instruction count per inference instead.

    python -m device_bench.costs a.tflite b.tflite --threads 1        # one JSON line: {"us": [...], ...}
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from .errors import BenchError
from .measure import ModelRunner
from .results import BenchParams

DEFAULT_ROUNDS = 7
DEFAULT_ROUND_SECS = 0.03


def time_models(paths, *, num_threads: int = 1, rounds: int = DEFAULT_ROUNDS,
                round_secs: float = DEFAULT_ROUND_SECS, min_runs: int = 5) -> list[float]:
    """Median invoke time (microseconds) of each model, XNNPACK on, timed in interleaved rounds.

    Args:
        paths: .tflite files, small enough to hold all of them loaded at once.
        num_threads: interpreter threads (1: the stable figure rank choices are made on).
        rounds: interleaved rounds; each model's figure is the median of its round medians.
        round_secs, min_runs: per model and round, at least this long and this many runs.
    """
    if rounds < 1 or round_secs <= 0 or min_runs < 1:
        raise BenchError(f"Invalid timing settings: rounds={rounds} (>= 1), round_secs={round_secs} (> 0), "
                         f"min_runs={min_runs} (>= 1).")
    params = BenchParams(num_runs=min_runs, min_secs=round_secs, num_threads=num_threads, xnnpack=True,
                         warmup_runs=3, warmup_min_secs=round_secs)
    runners = [ModelRunner(p, params) for p in paths]
    for r in runners:
        r.warmup()
    for _ in range(rounds):
        for r in runners:
            r.timed_round(min_runs, round_secs, None)
    return [float(np.median(r.round_medians_us)) for r in runners]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m device_bench.costs", description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    ap.add_argument("--round-secs", type=float, default=DEFAULT_ROUND_SECS)
    args = ap.parse_args(argv)
    from ._interpreter import runtime_version
    from .sysinfo import cpu_model

    try:
        us = time_models(args.models, num_threads=args.threads, rounds=args.rounds, round_secs=args.round_secs)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"us": us, "cpu": cpu_model(), "runtime": runtime_version(), "threads": args.threads}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
