"""How long the factorizations take on ResNet-50's convolutions (random weights, `weights=None`).

    python benchmarks/bench_decompose.py                       # tucker2 at energy 0.9, every conv
    python benchmarks/bench_decompose.py --scheme cp --energy 0.5 --cp-time-budget 2

Part 1 times the math alone on every Conv2D kernel (1x1 included), one line per layer. Part 2 times
`edge_lowrank.rewrite.compress` on the whole model (rank selection, factorization, Keras graph rewrite).
OpenBLAS is pinned to one thread: on a shared 2-core machine its spinning threads made a 256x256
eigendecomposition 20x slower.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scheme", default="tucker2", choices=("tucker2", "cp", "tucker2-spatial", "spatial", "channel"))
    ap.add_argument("--energy", type=float, default=0.9)
    ap.add_argument("--cp-time-budget", type=float, default=5.0, help="seconds of ALS per layer (cp)")
    ap.add_argument("--cp-iters", type=int, default=100, help="ALS iterations per layer at most (cp)")
    ap.add_argument("--skip-compress", action="store_true", help="time the math only")
    ap.add_argument("--json", default=None, help="write the figures to this file")
    args = ap.parse_args(argv)

    import keras
    import numpy as np

    from edge_lowrank.rank import LayerSpec, choose_rank
    from edge_lowrank.rewrite import CompressionPolicy, compress
    from edge_lowrank.rewrite.blocks import run_scheme

    keras.utils.set_random_seed(0)
    model = keras.applications.ResNet50(weights=None)
    convs = [lyr for lyr in model.layers if type(lyr) is keras.layers.Conv2D]
    print(f"ResNet-50 (weights=None): {len(convs)} Conv2D layers, scheme {args.scheme}, energy {args.energy}")
    rows, t_all = [], time.monotonic()
    for i, lyr in enumerate(convs, 1):
        w = lyr.kernel.numpy().astype(np.float64)
        if args.scheme in ("cp", "tucker2-spatial", "spatial") and 1 in w.shape[:2]:
            continue  # these need a spatial kernel
        spec = LayerSpec(lyr.name, "conv", w.shape, (((1, 1), (1, 1)),), True)
        t0 = time.monotonic()
        choice = choose_rank(args.scheme, spec, w, energy=args.energy)
        f = run_scheme(args.scheme, "conv", w, choice.rank, None, cp_n_iter_max=args.cp_iters,
                       cp_time_budget_s=args.cp_time_budget)
        dt = time.monotonic() - t0
        rows.append({"layer": lyr.name, "shape": list(w.shape), "ranks": list(choice.rank), "seconds": dt,
                     "rel_error": f.relative_error, "n_iter": getattr(f, "n_iter", None)})
        print(f"  [{i:2d}/{len(convs)}] {lyr.name:28s} {str(w.shape):20s} ranks {str(choice.rank):12s} "
              f"{dt:6.2f} s  error {f.relative_error:.3f}", flush=True)
    math_s = time.monotonic() - t_all
    print(f"math: {len(rows)} layers in {math_s:.1f} s")
    result = {"scheme": args.scheme, "energy": args.energy, "layers": rows, "math_seconds": math_s}
    if not args.skip_compress:
        t0 = time.monotonic()
        _, rep = compress(model, CompressionPolicy(args.scheme, energy=args.energy,
                                                   cp_time_budget_s=args.cp_time_budget,
                                                   cp_n_iter_max=args.cp_iters))
        result["compress_seconds"] = time.monotonic() - t0
        result["mac_ratio"] = rep.macs_after / rep.macs_before
        result["factorized"] = sum(d.action == "factorized" for d in rep.layers)
        print(f"compress(): {result['compress_seconds']:.1f} s, {result['factorized']} layers factorized, "
              f"MACs {rep.macs_before / 1e9:.2f} G -> {rep.macs_after / 1e9:.2f} G")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
