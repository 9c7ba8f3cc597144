"""Per-op profile of Keras models in int8 and float32 on the host: where the time goes, and at what MAC rate.

    python benchmarks/bench_ops.py                                              # the sample ResNet
    python benchmarks/bench_ops.py sample_models/resnet_fmnist.keras runs/targets/models/auto.keras
    python benchmarks/bench_ops.py MODEL.keras --json runs/bench_ops.json

LiteRT's Python interpreter has no op profiler, and XNNPACK runs a whole model as one delegate node anyway.
So every MAC-doing layer (Conv2D, DepthwiseConv2D, Dense, also inside the nested blocks of a rewritten model)
is built alone on its input shape, converted by the real converter in int8 and in float32, and timed by
`device_bench.costs` (XNNPACK, one thread, all micro models interleaved): the same cost table `--scheme auto`
uses, cached per op shape. The whole model is timed too; "other" is what the layers do not explain (pooling,
adds, padding, the interpreter's per-op overhead). MAC rates are set against `device_bench.sysinfo`'s peak
estimate of one core. OpenBLAS and TF log noise are pinned off as in the other benchmarks.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402

DEFAULT_MODEL = "sample_models/resnet_fmnist.keras"
MAC_LAYERS = ("Conv2D", "DepthwiseConv2D", "Dense")


def _leaves(model, prefix=""):
    """(name, layer, input shape) of every MAC-doing layer, nested blocks included, first call only."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaves(layer, prefix + layer.name + "/")
        elif type(layer).__name__ in MAC_LAYERS and layer._inbound_nodes:
            shape = tuple(int(d) for d in layer._inbound_nodes[0].input_tensors[0].shape[1:])
            yield prefix + layer.name, layer, shape


def _describe(layer, shape) -> str:
    cfg = layer.get_config()
    k = tuple(cfg.get("kernel_size", ())) or ()
    kind = type(layer).__name__.replace("Conv2D", "Conv")
    if kind == "Dense":
        return f"Dense {shape[-1]}->{cfg['units']}"
    s = tuple(cfg.get("strides", (1, 1)))
    out = cfg.get("filters") or shape[-1] * cfg.get("depth_multiplier", 1)
    return (f"{kind} {k[0]}x{k[1]} {shape[-1]}->{out} @{shape[0]}x{shape[1]}"
            + (f" s{s[0]}" if s != (1, 1) else ""))


def profile(path: str, tables: dict) -> dict:
    """Per-layer and whole-model costs of one .keras file in every precision of `tables`."""
    from edge_lowrank.auto.candidates import Option
    from edge_lowrank.auto.costs import layer_key, model_key
    from edge_lowrank.auto.plan import micro_model
    from edge_lowrank.modelio import load_keras_model
    from edge_lowrank.profile import layer_macs, profile_model

    model = load_keras_model(path)
    keep = Option(None, None, 0.0, 0, 0)
    rows = []
    for name, layer, shape in _leaves(model):
        has_bias = bool(getattr(layer, "use_bias", False))
        key = layer_key(layer, shape, has_bias, keep)
        rows.append({"layer": name, "op": _describe(layer, shape), "macs": int(layer_macs(layer)),
                     "_item": (key, lambda lyr=layer, s=shape, b=has_bias: micro_model(lyr, None, s, b, keep))})
    import numpy as np

    calib = np.random.default_rng(0).random((8,) + tuple(model.inputs[0].shape[1:])).astype(np.float32)
    out = {"model": path, "macs": profile_model(model).macs, "layers": rows, "whole_us": {}}
    for precision, table in tables.items():
        costs = table.lookup([r["_item"] for r in rows])
        for r, c in zip(rows, costs):
            r[f"{precision}_us"] = c
        out["whole_us"][precision] = table.lookup([(model_key(model), lambda: model, calib)])[0]
    for r in rows:
        del r["_item"]
    return out


def render(res: dict, peaks: dict) -> str:
    precisions = list(res["whole_us"])
    head = ["layer", "op", "MACs"] + [f"{p} us" for p in precisions] + [f"{p} GMAC/s" for p in precisions]
    if len(precisions) == 2:
        head.append("int8 vs fp32")
    lines = []
    for r in res["layers"]:
        cells = [r["layer"], r["op"], f"{r['macs'] / 1e6:.2f}M"]
        cells += [f"{r[f'{p}_us']:.1f}" for p in precisions]
        cells += [f"{r['macs'] / r[f'{p}_us'] / 1e3:.1f}" for p in precisions]
        if len(precisions) == 2:
            cells.append(f"{r['float32_us'] / r['int8_us']:.2f}x")
        lines.append(cells)
    summed = {p: sum(r[f"{p}_us"] for r in res["layers"]) for p in precisions}
    lines.append(["sum of layers", "", f"{sum(r['macs'] for r in res['layers']) / 1e6:.2f}M"]
                 + [f"{summed[p]:.1f}" for p in precisions] + [""] * len(precisions)
                 + ([f"{summed['float32'] / summed['int8']:.2f}x"] if len(precisions) == 2 else []))
    lines.append(["whole model", "", f"{res['macs'] / 1e6:.2f}M"] + [f"{res['whole_us'][p]:.1f}" for p in precisions]
                 + [f"{res['macs'] / res['whole_us'][p] / 1e3:.1f}" for p in precisions]
                 + ([f"{res['whole_us']['float32'] / res['whole_us']['int8']:.2f}x"] if len(precisions) == 2 else []))
    lines.append(["other (not in a layer)", "", ""] + [f"{res['whole_us'][p] - summed[p]:.1f}" for p in precisions]
                 + [""] * (len(precisions) + (1 if len(precisions) == 2 else 0)))
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines)]
    fmt = lambda cells: "  ".join(str(c).rjust(w) if i >= 2 else str(c).ljust(w)  # noqa: E731
                                  for i, (c, w) in enumerate(zip(cells, widths)))
    text = [res["model"], fmt(head), fmt(["-" * w for w in widths])] + [fmt(c) for c in lines]
    for p in precisions:
        peak, why = peaks[p]
        text.append(f"{p}: whole model at {res['macs'] / res['whole_us'][p] / 1e3:.1f} GMAC/s, "
                    f"{res['macs'] / res['whole_us'][p] * 1e6 / peak * 100:.0f}% of the estimated peak "
                    f"{peak / 1e9:.0f} GMAC/s ({why})")
    return "\n".join(text)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=[DEFAULT_MODEL], help=f".keras files (default {DEFAULT_MODEL})")
    ap.add_argument("--precisions", default="int8,float32", help="int8, float32 or both")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args(argv)
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    bad = [p for p in precisions if p not in ("int8", "float32")] + [m for m in args.models if not os.path.isfile(m)]
    if bad or not precisions:
        print(f"bench_ops.py: error: no such model or precision: {', '.join(bad) or 'none given'}", file=sys.stderr)
        return 2
    from device_bench.sysinfo import peak_macs_per_s
    from edge_lowrank.auto.costs import CostTable

    tables = {p: CostTable("host", precision=p) for p in precisions}
    peaks = {p: peak_macs_per_s(p) for p in precisions}
    results = []
    for m in args.models:
        res = profile(m, tables)
        results.append(res)
        print(render(res, peaks), flush=True)
        print()
    if args.json:
        from edge_lowrank.fileio import atomic_write_text

        atomic_write_text(args.json, json.dumps({"models": results, "peaks": {p: list(v) for p, v in peaks.items()},
                                                 "tables": {p: str(t.path) for p, t in tables.items()}}, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
