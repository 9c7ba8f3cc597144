"""Top-1 of `output-channels` (thinner feature maps) against other schemes at equal MAC budgets, after the same
distillation, on a sample model and Fashion-MNIST (issue 14).

    python benchmarks/bench_thin_accuracy.py                       # resnet_fmnist, 2x, output-channels vs spatial
    python benchmarks/bench_thin_accuracy.py --budgets 2,3 --schemes output-channels,output-channels:sym,spatial \
        --train-samples 10000 --test-samples 10000

`output-channels:sym` fits every pair on the original model's activations alone (no asymmetric refit).

Every scheme gets `CompressionPolicy(scheme, target_mac_ratio=1/budget)` (calibration images from
fashion-mnist:calib for the data-driven schemes), then `distill(epochs=--epochs, seed 0)` on the first
--train-samples training images; top-1 on the first --test-samples test images before and after.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DATA_DRIVEN = ("output", "output-channels", "auto")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="bench_thin_accuracy.py", description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "sample_models" / "resnet_fmnist.keras"))
    ap.add_argument("--schemes", default="output-channels,spatial")
    ap.add_argument("--budgets", default="2", help="comma list of MAC reductions (2 = half the MACs)")
    ap.add_argument("--train-samples", type=int, default=5000)
    ap.add_argument("--test-samples", type=int, default=5000)
    ap.add_argument("--calib-samples", type=int, default=512)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    try:
        budgets = [float(b) for b in args.budgets.split(",") if b.strip()]
    except ValueError:
        ap.error(f"invalid --budgets {args.budgets!r}: expected numbers > 1")
    if not budgets or any(b <= 1 for b in budgets):
        ap.error(f"invalid --budgets {args.budgets!r}: expected numbers > 1")

    from edge_lowrank.data import load_dataset
    from edge_lowrank.finetune import distill
    from edge_lowrank.finetune.distill import top1
    from edge_lowrank.modelio import load_keras_model
    from edge_lowrank.profile import profile_model
    from edge_lowrank.rewrite import CompressionPolicy, compress
    from edge_lowrank.rewrite.thin import thin

    model = load_keras_model(args.model)
    test = load_dataset("fashion-mnist:test").take(args.test_samples)
    train = load_dataset("fashion-mnist:train").take(args.train_samples)
    calib = load_dataset("fashion-mnist:calib").take(args.calib_samples).x
    macs0 = profile_model(model).macs
    base = 100 * top1(model, test)
    print(f"float model: top-1 {base:.2f} % on {len(test)} test images, {macs0 / 1e6:.2f}M MACs; distillation "
          f"{args.epochs} epoch(s) on {len(train)} training images", flush=True)
    out = {"model": args.model, "top1": base, "train_samples": len(train), "test_samples": len(test),
           "epochs": args.epochs, "rows": []}
    for budget in budgets:
        for scheme in filter(None, (s.strip() for s in args.schemes.split(","))):
            t0 = time.monotonic()
            name, _, variant = scheme.partition(":")  # output-channels:sym = the symmetric fit alone
            pol = CompressionPolicy(name, target_mac_ratio=1.0 / budget,
                                    calib_data=calib if name in DATA_DRIVEN else None)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                new, _ = thin(model, pol, asymmetric=False) if variant == "sym" else compress(model, pol)
            t_compress = time.monotonic() - t0
            before = 100 * top1(new, test)
            distill(new, model, train, epochs=args.epochs, verbose=False, seed=0)
            after = 100 * top1(new, test)
            prof = profile_model(new)
            row = {"budget": budget, "scheme": scheme, "mac_ratio": prof.macs / macs0, "params": prof.params,
                   "top1_before": before, "top1_after": after, "compress_s": t_compress,
                   "total_s": time.monotonic() - t0}
            out["rows"].append(row)
            print(f"{budget:g}x {scheme:16s} MACs {row['mac_ratio']:.3f}x  params {prof.params:,}  top-1 before "
                  f"{before:.2f}  after {after:.2f} ({after - base:+.2f})  compress {t_compress:.0f} s, "
                  f"total {row['total_s']:.0f} s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
