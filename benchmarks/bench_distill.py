"""Distillation settings side by side: one rewrite of the sample ResNet, fine-tuned under each setting.

    python benchmarks/bench_distill.py                                   # the default study (see CONFIGS)
    python benchmarks/bench_distill.py --budget 3 --train-samples 5000 --epochs 1 \
        --configs "default:;kd-only:alpha=0;T2:temperature=2" --out runs/distill.jsonl

The model is rewritten once (`--scheme` at 1/--budget of the MACs, seeded), saved, and every setting starts
from that same file, with the same seed and the same first --train-samples Fashion-MNIST training images.
Each row: float Keras top-1 on the first --test-samples test images before and after, the seconds of
`distill`, and (with --int8) the int8 .tflite's top-1 on the same images (calibrated on 200 fixed images).
A setting is `name:key=value,key=value` of `edge_lowrank.finetune.distill` keyword arguments.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

CONFIGS = "default:"


def parse_configs(text: str) -> list[tuple[str, dict]]:
    out = []
    for part in text.split(";"):
        if not part.strip():
            continue
        name, _, kv = part.partition(":")
        kwargs = {}
        for item in filter(None, (s.strip() for s in kv.split(","))):
            k, _, v = item.partition("=")
            try:
                kwargs[k.strip()] = json.loads(v)
            except ValueError:
                kwargs[k.strip()] = v.strip()
        out.append((name.strip(), kwargs))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "sample_models" / "resnet_fmnist.keras"))
    ap.add_argument("--scheme", default="spatial")
    ap.add_argument("--budget", type=float, default=3.0, help="fewer MACs: target_mac_ratio = 1/budget")
    ap.add_argument("--train-samples", type=int, default=5000)
    ap.add_argument("--test-samples", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--seeds", default="0", help="comma-separated: each setting runs once per seed (the order of "
                    "the training images); the summary averages them")
    ap.add_argument("--configs", default=CONFIGS)
    ap.add_argument("--int8", action="store_true", help="also the int8 .tflite top-1 of each result")
    ap.add_argument("--out", default=None, help="append one JSON line per setting here")
    args = ap.parse_args(argv)

    import keras
    import numpy as np

    from edge_lowrank.data import load_dataset
    from edge_lowrank.finetune import distill, top1
    from edge_lowrank.modelio import load_keras_model
    from edge_lowrank.rewrite import CompressionPolicy, compress

    teacher = load_keras_model(args.model)
    train = load_dataset("fashion-mnist:train").take(args.train_samples)
    test = load_dataset("fashion-mnist:test").take(args.test_samples)
    calib = load_dataset("fashion-mnist:calib").take(200)
    seeds = [int(v) for v in args.seeds.split(",")]
    keras.utils.set_random_seed(seeds[0])
    student, rep = compress(teacher, CompressionPolicy(args.scheme, target_mac_ratio=1 / args.budget,
                                                       calib_data=calib.x))
    tmp = Path(tempfile.mkdtemp()) / "rewritten.keras"
    student.save(tmp)
    t_top1 = top1(teacher, test)
    before = top1(student, test)
    print(f"teacher {t_top1:.4f}; {args.scheme} at 1/{args.budget:g} MACs before fine-tuning {before:.4f}; "
          f"{args.train_samples} train, {len(test)} test images, {args.epochs} epoch(s)", flush=True)
    from edge_lowrank.finetune.recalibrate import recalibrate

    for mode in ("mean", "affine"):  # re-estimation alone, before any training step
        s = load_keras_model(tmp)
        recalibrate(s, teacher, train.x[:1024], mode=mode)
        print(f"re-estimated ({mode}) on 1024 training images, no training: {top1(s, test):.4f}", flush=True)
    summary = {}
    for (name, kwargs), seed in ((c, sd) for c in parse_configs(args.configs) for sd in seeds):
        s = load_keras_model(tmp)
        t0 = time.monotonic()
        hist = distill(s, teacher, train, epochs=args.epochs, batch_size=args.batch_size, verbose=False,
                       seed=seed, **kwargs)
        secs = time.monotonic() - t0
        row = {"name": name, "kwargs": kwargs, "seed": seed, "scheme": args.scheme, "budget": args.budget,
               "epochs": args.epochs, "train": args.train_samples, "test": len(test), "teacher": t_top1,
               "before": before, "after": top1(s, test), "seconds": round(secs, 1),
               "loss": hist.get("loss")}
        if args.int8:  # the same converter and LiteRT check as `run`'s export stage
            import converters

            tfl = converters.to_tflite(s, precision="int8", representative_data=calib.x)
            fid = converters.check_fidelity(s, tfl, test, n=None, subject=name)
            row["int8"], row["int8_agreement"] = fid.accuracy_tflite, fid.to_dict().get("top1_agreement")
        summary.setdefault(name, []).append(row)
        print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out, "a") as fh:
                fh.write(json.dumps(row) + "\n")
    print(f"\n| setting | float top-1 % (seeds {args.seeds}) | mean |{' int8 top-1 % |' if args.int8 else ''}"
          f" s per run |")
    for name, rows in summary.items():
        f = [r["after"] * 100 for r in rows]
        i8 = f" {np.mean([r['int8'] for r in rows]) * 100:.2f} |" if args.int8 else ""
        print(f"| {name} | {' / '.join(f'{v:.2f}' for v in f)} | {np.mean(f):.2f} |{i8} "
              f"{np.mean([r['seconds'] for r in rows]):.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
