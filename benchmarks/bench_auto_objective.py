"""auto's objective, side by side: kernel-error auto vs data-aware (task) auto vs single schemes, at a MAC budget.

    python benchmarks/bench_auto_objective.py                       # sample ResNet, 2x fewer MACs
    python benchmarks/bench_auto_objective.py --budget 3 --train-samples 5000 --test-samples 2000
    python benchmarks/bench_auto_objective.py --spearman            # + per-option proxy vs measured top-1

Every variant is rewritten from the same float model with `CompressionPolicy(target_mac_ratio=1/budget)`
(auto: costs from the cached host int8 cost table), scored (float Keras top-1) on the first --test-samples
Fashion-MNIST test images, distilled for --epochs on the first --train-samples training images (same seed
for every variant), scored again. Both auto variants get the same 200 fixed calibration images; only
`auto_objective` differs. The predicted cost is the cost table's (microseconds, host int8, one thread).

--spearman: for every option auto weighs (one layer alone at one scheme and rank, never-slower filtered),
its kernel error and its measured output shift on the calibration images, against its top-1 drop on the test
images; prints the Spearman rank correlation of each proxy with the measured drop.
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

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _spearman(a, b) -> float:
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


def spearman_study(model, calib, test):
    """Per option: (kernel error, measured shift, measured top-1 drop on `test`)."""
    from edge_lowrank.auto import plan as P
    from edge_lowrank.auto.sensitivity import TaskProbe, _kernel_variable
    from edge_lowrank.finetune.distill import top1
    from edge_lowrank.rewrite import CompressionPolicy, base

    captured = {}
    orig = P.plan_auto

    def spy(model_, policy, live, **kw):
        res = orig(model_, policy, live, **kw)
        captured["live"] = live
        return res

    P.plan_auto = spy
    try:  # the plans compress builds (folded kernels, BatchNorm pairs), with auto's options
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            base.compress(model, CompressionPolicy("auto", target_mac_ratio=0.5, cost_target="macs",
                                                   auto_objective="kernel"))
    finally:
        P.plan_auto = orig
    probe = TaskProbe(model, calib)
    base_top1 = top1(model, test)
    rows = []
    for p in captured["live"]:
        if p.spec is None:
            continue
        for o in P.layer_options(p.spec, p.kernel, schemes=P.AUTO_SCHEMES)[1:]:
            shift = probe.shift(p, o)
            var = _kernel_variable(p.site.layer)
            old = var.numpy()
            var.assign((old + probe._delta(p, o).reshape(old.shape)).astype(old.dtype))
            try:
                acc = top1(model, test)
            finally:
                var.assign(old)
            rows.append({"layer": p.site.name, "option": o.label, "error": o.error, "shift": shift,
                         "drop_pp": 100 * (base_top1 - acc)})
    e = [r["error"] for r in rows]
    s = [r["shift"] for r in rows]
    d = [r["drop_pp"] for r in rows]
    return rows, {"options": len(rows), "spearman_kernel_error": _spearman(e, d), "spearman_shift": _spearman(s, d)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="bench_auto_objective.py", description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "sample_models" / "resnet_fmnist.keras"))
    ap.add_argument("--budget", type=float, default=2.0, help="fewer MACs by this factor (default 2)")
    ap.add_argument("--variants", default="spatial,auto-kernel,auto-task")
    ap.add_argument("--train-samples", type=int, default=5000)
    ap.add_argument("--test-samples", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--cost-target", default="host", help="auto's cost: host (default), qemu:a76 or macs")
    ap.add_argument("--spearman", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    from edge_lowrank.data import load_dataset
    from edge_lowrank.finetune import distill
    from edge_lowrank.finetune.distill import top1
    from edge_lowrank.modelio import load_keras_model
    from edge_lowrank.profile import profile_model
    from edge_lowrank.rewrite import CompressionPolicy, compress

    model = load_keras_model(args.model)
    test = load_dataset("fashion-mnist:test").take(args.test_samples)
    train = load_dataset("fashion-mnist:train").take(args.train_samples)
    calib = load_dataset("fashion-mnist:calib").take(200).x
    macs0 = profile_model(model).macs
    print(f"float model: top-1 {100 * top1(model, test):.2f} % on {len(test)} test images, {macs0 / 1e6:.2f}M MACs")
    ratio = 1.0 / args.budget
    out = {"budget": args.budget, "train_samples": len(train), "test_samples": len(test), "epochs": args.epochs,
           "variants": {}}
    for v in filter(None, args.variants.split(",")):
        t0 = time.monotonic()
        if v.startswith("auto"):
            pol = CompressionPolicy("auto", target_mac_ratio=ratio, calib_data=calib, cost_target=args.cost_target,
                                    auto_objective=v.split("-", 1)[1])
        else:
            pol = CompressionPolicy(v, target_mac_ratio=ratio)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            new, rep = compress(model, pol)
        t_compress = time.monotonic() - t0
        before = top1(new, test)
        distill(new, model, train, epochs=args.epochs, verbose=False, seed=0)
        after = top1(new, test)
        row = {"macs_ratio": profile_model(new).macs / macs0, "top1_before": 100 * before, "top1_after": 100 * after,
               "compress_s": t_compress,
               "layers": {d.name: f"{d.scheme} {d.ranks}" for d in rep.layers if d.action == "factorized"}}
        if rep.auto:
            row.update(predicted_cost=rep.auto["predicted_cost"], original_cost=rep.auto["original_cost"],
                       objective=rep.auto.get("objective"), candidates=rep.auto.get("candidates"),
                       single_scheme_cost=(rep.auto.get("single_schemes") or {}).get("single_scheme_cost"))
        out["variants"][v] = row
        print(f"{v:12s} MACs {row['macs_ratio']:.3f}x  top-1 before {row['top1_before']:.2f}  after "
              f"{row['top1_after']:.2f}  ({t_compress:.0f} s compress)  {row['layers']}", flush=True)
        if rep.auto:
            print(f"   cost {row['predicted_cost']:.1f} of {row['original_cost']:.1f}; singles "
                  f"{ {k: round(c, 1) for k, c in (row['single_scheme_cost'] or {}).items()} }; "
                  f"{row['objective']}", flush=True)
            for name, c in (row["candidates"] or {}).items():
                print(f"   candidate {name:12s} shift {c['shift']:.4f} agreement {100 * c['agreement']:.1f} % "
                      f"cost {c['cost']:.1f} MACs {c['macs'] / macs0:.3f}x{'  <- chosen' if c.get('chosen') else ''}")
    if args.spearman:
        rows, summary = spearman_study(model, calib, test)
        out["spearman"] = summary
        out["options"] = rows
        print(f"per-option Spearman vs measured top-1 drop ({summary['options']} options): kernel error "
              f"{summary['spearman_kernel_error']:.3f}, output shift {summary['spearman_shift']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
