"""`python -m device_bench.qemu A.tflite [B.tflite ...] --profiles cortex-a53,cortex-a76`: the comparison
across models and CPU profiles (instructions per inference), without TensorFlow.

One model on one profile is also `edge-lowrank bench A.tflite --target qemu:<profile>`.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import BenchError
from ..results import BenchParams
from .cpuinfo import PROFILES


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m device_bench.qemu", description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", metavar="MODEL.tflite")
    parser.add_argument("--profiles", default="cortex-a53,cortex-a76,cortex-a710",
                        help=f"comma-separated CPU profiles among {', '.join(PROFILES)} (default: %(default)s)")
    parser.add_argument("--baseline", help="the model the others are compared with (default: the first)")
    parser.add_argument("--runs", type=int, default=2, help="counted steady-state invokes per model (default: 2)")
    parser.add_argument("--json", metavar="OUT.json", help="write every result as JSON")
    args = parser.parse_args(argv)
    from .matrix import run_matrix, to_markdown

    try:
        profiles = [p.strip() for p in args.profiles.split(",") if p.strip()]
        bad = [p for p in profiles if p not in PROFILES]
        if bad:
            raise BenchError(f"Invalid value for argument `--profiles`. Expected names among {sorted(PROFILES)}. "
                             f"Received: {','.join(bad)}.")
        params = BenchParams(num_runs=max(1, args.runs), warmup_runs=0, min_secs=0.0, warmup_min_secs=0.0)
        results = run_matrix(args.models, profiles, params)
    except BenchError as e:
        print(f"device_bench.qemu: error: {e}", file=sys.stderr)
        return 1
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump([r.to_dict() for r in results], f, indent=1)
    print(to_markdown(results, args.baseline), end="")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
