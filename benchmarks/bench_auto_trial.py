"""auto's whole choices judged by a short fine-tune: each choice's held-out shift after trials of several sizes
and seeds, beside its shift before fine-tuning (docs/auto.md, step 5).

    python benchmarks/bench_auto_trial.py                                   # sample VGG, 2x and 4x, 3 seeds
    python benchmarks/bench_auto_trial.py --model resnet --budgets 3 --samples 5000 --seeds 0

With the frontier's settings (`bench_frontier.py`, `run`'s defaults): 200 `fashion-mnist:calib` images price
the options, the first --train-samples training images are the fine-tuning data the trials draw from, costs
come from the cached host int8 cost table. For every (budget, trial size, trial seed) `compress` runs `auto`
with `trial_data` and prints every whole choice's held-out output shift (KL) after its trial and which one won.
A stable winner across seeds is what the trial size must give; compare it with the frontier's top-1 after the
real fine-tune.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

SAMPLES = {"resnet": "resnet_fmnist", "vgg": "vgg_fmnist"}


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="bench_auto_trial.py", description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="vgg", help="resnet, vgg or a .keras path")
    ap.add_argument("--budgets", default="2,4", help="fewer MACs by these factors")
    ap.add_argument("--samples", default="2000,5000", help="trial sizes (images distilled per choice)")
    ap.add_argument("--seeds", default="0,1,2", help="trial seeds")
    ap.add_argument("--train-samples", type=int, default=10000, help="fine-tuning images the trials draw from")
    ap.add_argument("--cost-target", default="host", help="auto's cost: host (default), qemu:a76 or macs")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    from edge_lowrank.data import load_dataset
    from edge_lowrank.modelio import load_keras_model
    from edge_lowrank.rewrite import CompressionPolicy, compress
    from sample_models import sample_model_path

    path = sample_model_path(SAMPLES[args.model]) if args.model in SAMPLES else Path(args.model)
    model = load_keras_model(path)
    train = load_dataset("fashion-mnist:train").take(args.train_samples)
    calib = load_dataset("fashion-mnist:calib").take(200).x
    rows = []
    for budget in [float(b) for b in args.budgets.split(",")]:
        for samples in _ints(args.samples):
            for seed in _ints(args.seeds):
                t0 = time.monotonic()
                policy = CompressionPolicy("auto", target_mac_ratio=1 / budget, calib_data=calib,
                                           cost_target=args.cost_target, trial_data=train, trial_samples=samples,
                                           trial_seed=seed)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    _, rep = compress(model, policy)
                a = rep.auto
                trial = a.get("trial") or {}
                row = {"budget": budget, "samples": samples, "seed": seed, "chosen": trial.get("chosen"),
                       "note": trial.get("note"), "seconds": round(time.monotonic() - t0, 1),
                       "before": {n: c["shift"] for n, c in (a.get("candidates") or {}).items() if c["met"]},
                       "after": {n: r["shift"] for n, r in trial.get("rows", {}).items()}}
                rows.append(row)
                after = ", ".join(f"{n} {v:.4f}" for n, v in row["after"].items()) or row["note"] or "no choice"
                before = ", ".join(f"{n} {v:.3f}" for n, v in row["before"].items())
                print(f"{budget:g}x  trial {samples:,} images, seed {seed}: {after}  -> {row['chosen']}   "
                      f"(before fine-tuning: {before}; {row['seconds']:.0f} s)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"model": str(path), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
