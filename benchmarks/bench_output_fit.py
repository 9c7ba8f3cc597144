"""The `output` scheme's fits side by side (issue 14): linear (Zhang et al. 2015) against nonlinear (post-ReLU)
and asymmetric (on the compressed prefix) fits (Zhang et al. TPAMI 2016), and spatial at the same MAC budget,
on the sample models and Fashion-MNIST: per-layer response error, top-1 before and after the same
distillation, float and int8.

    python benchmarks/bench_output_fit.py                                    # resnet, 2x, the default variants
    python benchmarks/bench_output_fit.py --models resnet,vgg --budgets 2,3 \
        --train-samples 10000 --test-samples 10000 --json build/output_fit.json

Variants: `output:FIT` (FIT one of linear, nonlinear, linear-asymmetric, nonlinear-asymmetric) or any other
scheme name. Each gets `CompressionPolicy(scheme, target_mac_ratio=1/budget)` (512 fashion-mnist:calib images
for `output`), then `distill(epochs=--epochs, seed=--seed)` on the first --train-samples training images.

Per-layer response error: for every rewritten layer, on the first --error-samples test images, the relative
error ||a' - a|| / ||a - mean a|| of the feature map the next layer reads (after the BatchNorm folded into it,
and after the ReLU that follows it, if any) in the rewritten model against the original; it accumulates the
error of the layers before it, as the network sees it. Before fine-tuning. int8: `to_tflite(precision=int8)`
calibrated on 200 calib images, run by LiteRT + XNNPACK on every test image.
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

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_VARIANTS = "output:linear,output:linear-asymmetric,output:nonlinear,output:nonlinear-asymmetric,spatial"


def read_points(model, names) -> dict:
    """{layer: the layer whose output the next layer reads}: through a BatchNormalization, then a plain ReLU."""
    import keras

    from edge_lowrank.rewrite import graph as G
    from edge_lowrank.rewrite.output_fit import _plain_relu

    nodes = G.graph_nodes(model)

    def after(node):
        nxt = [n for n in nodes if node in n.parent_nodes]
        return nxt[0] if len(nxt) == 1 else None

    out = {}
    for name in names:
        node = next(n for n in nodes if n.operation is model.get_layer(name))
        nxt = after(node)
        if nxt is not None and isinstance(nxt.operation, keras.layers.BatchNormalization):
            node, nxt = nxt, after(nxt)
        if nxt is not None and _plain_relu(nxt.operation):
            node = nxt
        out[name] = node.operation.name
    return out


def _tensors(model, names):
    """The outputs of the named layers in `model`'s own graph (a factor block's `.output` is its inner one)."""
    from edge_lowrank.rewrite import graph as G

    nodes = G.graph_nodes(model)
    return [next(n for n in nodes if n.operation is model.get_layer(name)).output_tensors[0] for name in names]


def response_errors(model, new, points: dict, x) -> dict:
    import keras

    names = sorted(set(points.values()))
    a = keras.Model(model.inputs, _tensors(model, names)).predict(x, batch_size=250, verbose=0)
    b = keras.Model(new.inputs, _tensors(new, names)).predict(x, batch_size=250, verbose=0)
    a, b = (a, b) if len(names) > 1 else ([a], [b])
    err = {}
    for n, u, v in zip(names, a, b):
        u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
        err[n] = float(np.linalg.norm(u - v) / np.linalg.norm(u - u.reshape(-1, u.shape[-1]).mean(0)))
    return {layer: err[p] for layer, p in points.items()}


def int8_top1(model, calib, test, subject: str) -> float:
    from converters.convert import to_tflite_isolated
    from converters.fidelity import run_tflite

    flat = to_tflite_isolated(model, subject=subject, precision="int8", representative_data=calib[:200])
    return float(np.mean(np.argmax(run_tflite(flat, test.x), -1) == test.y))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="bench_output_fit.py", description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet", help="comma list of sample models: resnet, vgg")
    ap.add_argument("--variants", default=DEFAULT_VARIANTS)
    ap.add_argument("--budgets", default="2", help="comma list of MAC reductions (2 = half the MACs)")
    ap.add_argument("--train-samples", type=int, default=10000)
    ap.add_argument("--test-samples", type=int, default=10000)
    ap.add_argument("--calib-samples", type=int, default=512)
    ap.add_argument("--error-samples", type=int, default=500)
    ap.add_argument("--epochs", type=int, default=1, help="distillation epochs (0: none, 'after' = 'before')")
    ap.add_argument("--seed", type=int, default=0, help="distillation seed (its shuffling and initial state)")
    ap.add_argument("--no-int8", action="store_true", help="skip the int8 conversion and its top-1")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    try:
        budgets = [float(b) for b in args.budgets.split(",") if b.strip()]
    except ValueError:
        ap.error(f"invalid --budgets {args.budgets!r}: expected numbers > 1")
    if not budgets or any(b <= 1 for b in budgets):
        ap.error(f"invalid --budgets {args.budgets!r}: expected numbers > 1")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models or any(m not in ("resnet", "vgg") for m in models):
        ap.error(f"invalid --models {args.models!r}: expected resnet and/or vgg")
    from edge_lowrank.rewrite.output_fit import FITS

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        s, _, fit = v.partition(":")
        if (s == "output") != bool(fit) or fit and fit not in FITS:
            ap.error(f"invalid variant {v!r}: expected output:FIT (FIT one of {', '.join(FITS)}) or a scheme")

    from edge_lowrank.data import load_dataset
    from edge_lowrank.finetune import distill
    from edge_lowrank.finetune.distill import top1
    from edge_lowrank.modelio import load_keras_model
    from edge_lowrank.profile import profile_model
    from edge_lowrank.rewrite import CompressionPolicy, compress

    test = load_dataset("fashion-mnist:test").take(args.test_samples)
    train = load_dataset("fashion-mnist:train").take(args.train_samples)
    calib = load_dataset("fashion-mnist:calib").take(args.calib_samples).x
    x_err = test.x[:args.error_samples]
    out = {"train_samples": len(train), "test_samples": len(test), "epochs": args.epochs, "seed": args.seed,
           "models": {}, "rows": []}
    for mname in models:
        path = ROOT / "sample_models" / f"{mname}_fmnist.keras"
        model = load_keras_model(str(path))
        macs0 = profile_model(model).macs
        base = 100 * top1(model, test)
        base8 = None if args.no_int8 else 100 * int8_top1(model, calib, test, f"{mname} baseline")
        out["models"][mname] = {"top1": base, "top1_int8": base8, "macs": macs0}
        print(f"{mname}: float top-1 {base:.2f} %" + ("" if base8 is None else f", int8 {base8:.2f} %")
              + f" on {len(test)} test images, {macs0 / 1e6:.2f}M MACs; distillation {args.epochs} epoch(s) on "
              f"{len(train)} training images", flush=True)
        for budget in budgets:
            for variant in variants:
                scheme, _, fit = variant.partition(":")
                t0 = time.monotonic()
                pol = CompressionPolicy(scheme, target_mac_ratio=1.0 / budget, output_fit=fit or "linear",
                                        calib_data=calib if scheme in ("output", "auto") else None)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    new, rep = compress(model, pol)
                t_compress = time.monotonic() - t0
                done = [d.name for d in rep.layers if d.action == "factorized"]
                errs = response_errors(model, new, read_points(model, done), x_err)
                before = 100 * top1(new, test)
                if args.epochs > 0:
                    distill(new, model, train, epochs=args.epochs, verbose=False, seed=args.seed)
                after = 100 * top1(new, test) if args.epochs > 0 else before
                after8 = None if args.no_int8 else 100 * int8_top1(new, calib, test, f"{mname} {variant}")
                prof = profile_model(new)
                row = {"model": mname, "budget": budget, "variant": variant, "mac_ratio": prof.macs / macs0,
                       "params": prof.params, "response_errors": errs,
                       "mean_response_error": float(np.mean(list(errs.values()))) if errs else None,
                       "top1_before": before, "top1_after": after, "top1_after_int8": after8,
                       "compress_s": t_compress, "total_s": time.monotonic() - t0}
                out["rows"].append(row)
                print(f"{mname} {budget:g}x {variant:28s} MACs {row['mac_ratio']:.3f}x  mean response error "
                      f"{row['mean_response_error']:.3f}  top-1 before {before:.2f}  after {after:.2f} "
                      f"({after - base:+.2f})" + ("" if after8 is None else f"  int8 {after8:.2f}")
                      + f"  compress {t_compress:.0f} s, total {row['total_s']:.0f} s", flush=True)
                print("    " + "  ".join(f"{k} {v:.3f}" for k, v in errs.items()), flush=True)
                if args.json:  # after every row: a long run keeps what it measured
                    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
                    Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
