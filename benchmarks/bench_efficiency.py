"""Speedup efficiency of each low-rank scheme on keras.applications CNNs, int8 + XNNPACK (issue 8).

    python benchmarks/bench_efficiency.py                                    # resnet50,vgg16,mobilenetv2 @224
    python benchmarks/bench_efficiency.py --archs resnet50 --input-size 112 --schemes spatial,channel --no-arm
    python benchmarks/bench_efficiency.py --archs mobilenetv2 --input-size 32 --schemes channel --quick --no-arm

For each architecture (weights=None, seeded random weights: latency does not depend on the values) it builds
`baseline` and one variant per scheme at `CompressionPolicy(scheme, target_mac_ratio=--ratio)`, converts all of
them to int8 TFLite (the baseline to float32 too) and times them side by side, interleaved, one thread,
XNNPACK on the host. It reports:

1. Speedup efficiency = (speedup vs the int8 baseline) / (MAC reduction), with the MAC ratio actually reached
   (some schemes touch only some layers and cannot reach the target), the speedup's 95% CI and, when QEMU is
   set up, cortex-a76 instructions per inference (`--no-arm` to skip).
2. Tool throughput: seconds of `compress` and of `to_tflite(int8)` and the peak RSS, each (architecture,
   scheme) in a fresh child process. Finished children are cached under --out: a rerun resumes.
3. Achieved MACs/s of each int8 variant and of the float32 baseline against an *estimate* of one core's peak
   (`device_bench.sysinfo.peak_macs_per_s`).
4. For every scheme whose efficiency is below 0.85, a per-op profile built from single-layer int8 micro models
   (one per distinct factor-layer shape, timed interleaved): MACs, microseconds and GMAC/s per op kind against
   the dense convs they replaced.

`auto` is picked up when `CompressionPolicy(scheme="auto")` exists; until then its row says "unavailable".
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ARCHS = ("resnet50", "vgg16", "mobilenetv2")
TEST_ARCHS = ("tinycnn",)  # a small residual CNN for smoke tests (not a keras.applications model)
SCHEMES = ("spatial", "channel", "tucker2", "weight-svd", "cp", "auto", "output-channels")
LOW_EFFICIENCY = 0.85
CALIB_SAMPLES = 8
SEED = 0
# Input ranges of each architecture's usual preprocessing (caffe: BGR minus the mean; MobileNetV2: [-1, 1]).
INPUT_RANGE = {"resnet50": (-128.0, 128.0), "vgg16": (-128.0, 128.0), "mobilenetv2": (-1.0, 1.0),
               "tinycnn": (-1.0, 1.0)}


class ArgError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        raise ArgError(message)


# ----------------------------------------------------------------------------------------------- children


def build_model(arch: str, size: int, alpha: float = 1.0):
    import keras

    keras.utils.set_random_seed(SEED)
    shape = (size, size, 3)
    if arch == "resnet50":
        return keras.applications.ResNet50(weights=None, input_shape=shape)
    if arch == "vgg16":
        return keras.applications.VGG16(weights=None, input_shape=shape)
    if arch == "mobilenetv2":
        return keras.applications.MobileNetV2(weights=None, input_shape=shape, alpha=alpha)
    if arch == "tinycnn":
        L = keras.layers
        i = keras.Input(shape)
        x = L.Conv2D(32, 3, padding="same", activation="relu")(i)
        x = L.Conv2D(64, 3, strides=2, padding="same", activation="relu")(x)
        y = L.Conv2D(64, 3, padding="same", activation="relu")(x)
        y = L.Conv2D(64, 3, padding="same")(y)
        x = L.ReLU()(L.Add()([x, y]))
        x = L.Conv2D(128, 1, activation="relu")(x)
        x = L.GlobalAveragePooling2D()(x)
        return keras.Model(i, L.Dense(10)(x), name="tinycnn")
    raise ValueError(arch)


def calib_data(arch: str, size: int):
    import numpy as np

    lo, hi = INPUT_RANGE[arch]
    return np.random.default_rng(SEED).uniform(lo, hi, (CALIB_SAMPLES, size, size, 3)).astype(np.float32)


def layer_signatures(model) -> list[dict]:
    """Every MAC-doing layer of `model` with what a single-layer micro model needs to reproduce it."""
    import keras

    from edge_lowrank.profile import layer_macs

    from edge_lowrank.profile import _walk

    L = keras.layers
    out = []
    for prefix, layer in _walk(model):  # rewritten layers are nested Sequentials named like the original
        if not isinstance(layer, (L.Conv2D, L.DepthwiseConv2D, L.Dense)) or not layer._inbound_nodes:
            continue
        macs = layer_macs(layer)
        if not macs:
            continue
        node = layer._inbound_nodes[0]
        ins = [int(d) for d in tuple(node.input_tensors[0].shape)[1:]]
        cfg = layer.get_config()
        d = {"name": prefix + layer.name, "cls": type(layer).__name__, "in_shape": ins, "macs": int(macs),
             "use_bias": bool(cfg.get("use_bias", False))}
        if isinstance(layer, L.Dense):
            d.update(units=int(cfg["units"]))
        else:
            d.update(kernel=[int(k) for k in layer.kernel.shape[:2]], strides=[int(s) for s in cfg["strides"]],
                     padding=cfg["padding"], dilation=[int(s) for s in cfg["dilation_rate"]])
            if isinstance(layer, L.DepthwiseConv2D):
                d.update(depth_multiplier=int(cfg["depth_multiplier"]))
            else:
                d.update(filters=int(cfg["filters"]))
        d["key"] = signature_key(d)
        d["kind"] = op_kind(d)
        out.append(d)
    return out


def signature_key(d: dict) -> str:
    h, w, c = (d["in_shape"] + [1, 1, 1])[:3] if len(d["in_shape"]) == 3 else (1, 1, d["in_shape"][-1])
    if d["cls"] == "Dense":
        return f"Dense {c}->{d['units']}"
    kh, kw = d["kernel"]
    s = "" if d["strides"] == [1, 1] else f" s{d['strides'][0]}"
    dil = "" if d["dilation"] == [1, 1] else f" d{d['dilation'][0]}"
    if d["cls"] == "DepthwiseConv2D":
        return f"DepthwiseConv2D {kh}x{kw} {c}x{d['depth_multiplier']}{s}{dil} {d['padding']} @{h}x{w}"
    return f"Conv2D {kh}x{kw} {c}->{d['filters']}{s}{dil} {d['padding']} @{h}x{w}"


def op_kind(d: dict) -> str:
    if d["cls"] == "Dense":
        return "Dense"
    kh, kw = d["kernel"]
    s = "" if d["strides"] == [1, 1] else " strided"
    return f"{'DepthwiseConv2D' if d['cls'] == 'DepthwiseConv2D' else 'Conv2D'} {kh}x{kw}{s}"


def child_one(spec: dict) -> dict:
    """Build, rewrite and export one (architecture, scheme); write the .tflite files and return the figures."""
    import warnings

    from device_bench.sysinfo import peak_rss_mb, rss_mb

    t0 = time.monotonic()
    import keras  # noqa: F401

    from converters import to_tflite
    from edge_lowrank.fileio import atomic_write_bytes
    from edge_lowrank.profile import profile_model
    from edge_lowrank.rank.select import RankError
    from edge_lowrank.rewrite import CompressionPolicy, compress

    arch, scheme, size, ratio = spec["arch"], spec["scheme"], spec["input_size"], spec["ratio"]
    res = {"arch": arch, "scheme": scheme, "input_size": size, "ratio": ratio, "status": "ok",
           "import_s": time.monotonic() - t0}
    if scheme != "baseline":
        try:
            # auto gets the calibration images too, so it may thin pairs (output-channels); with random weights
            # the softmax barely moves, so its options are priced by kernel / output error, not output shift
            extra = {"auto_objective": "kernel"} if scheme == "auto" else {}
            policy = CompressionPolicy(scheme=scheme, target_mac_ratio=ratio, cp_time_budget_s=spec["cp_time_budget"],
                                       rank_multiple=spec.get("rank_multiple", 8), **extra,
                                       calib_data=calib_data(arch, size) if scheme in ("output-channels", "auto")
                                       else None)
        except (RankError, ValueError, TypeError) as e:
            res.update(status="unavailable", message=" ".join(str(e).split())[:300])
            return res
    t = time.monotonic()
    model = build_model(arch, size, spec.get("alpha", 1.0))
    res["build_s"] = time.monotonic() - t
    res["rss_after_build_mb"] = rss_mb()
    prof0 = profile_model(model)
    res["macs_before"], res["params_before"] = int(prof0.macs), int(prof0.params)
    original_sigs = {d["name"]: d for d in layer_signatures(model)}
    out = Path(spec["out_dir"])
    x = calib_data(arch, size)
    if scheme == "baseline":
        new = model
        res.update(compress_s=0.0, macs_after=res["macs_before"], params_after=res["params_before"])
        t = time.monotonic()
        flat = to_tflite(model, precision="float32")
        res["to_tflite_float32_s"] = time.monotonic() - t
        atomic_write_bytes(out / spec["fp32_name"], flat)
        res["tflite_float32"] = spec["fp32_name"]
        res["touched_macs_before"] = res["touched_macs_after"] = 0
        res["warnings"] = []
        res["new_layers"], res["replaced_layers"] = [], []
    else:
        t = time.monotonic()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            new, rep = compress(model, policy)
        res["compress_s"] = time.monotonic() - t
        res["warnings"] = sorted({" ".join(str(w.message).split())[:300] for w in caught
                                  if "budget" in str(w.message) or "no layer" in str(w.message)})
        prof1 = profile_model(new)
        res["macs_after"], res["params_after"] = int(prof1.macs), int(prof1.params)
        fact = [d for d in rep.layers if d.action == "factorized"]
        res["factorized_layers"] = len(fact)
        res["touched_macs_before"] = int(sum(d.macs_before for d in fact))
        res["touched_macs_after"] = int(sum(d.macs_after for d in fact))
        res["peak_rss_after_compress_mb"] = peak_rss_mb()
        new_sigs = layer_signatures(new)
        # output-channels keeps the names and changes the shapes: a layer is new when its signature is
        res["new_layers"] = [d for d in new_sigs if d["name"] not in original_sigs
                             or original_sigs[d["name"]]["key"] != d["key"]]
        res["replaced_layers"] = [original_sigs[d.name] for d in fact if d.name in original_sigs]
    res["mac_ratio"] = res["macs_after"] / res["macs_before"]
    res["all_layers"] = [{"key": d["key"], "kind": d["kind"], "macs": d["macs"]} for d in layer_signatures(new)]
    t = time.monotonic()
    flat = to_tflite(new, precision="int8", representative_data=x, input_range=INPUT_RANGE[arch])
    res["to_tflite_int8_s"] = time.monotonic() - t
    atomic_write_bytes(out / spec["int8_name"], flat)
    res["tflite_int8"] = spec["int8_name"]
    res["peak_rss_mb"] = peak_rss_mb()
    res["total_s"] = time.monotonic() - t0
    return res


def micro_layer(d: dict):
    import keras

    L = keras.layers
    if d["cls"] == "Dense":
        return L.Dense(d["units"], use_bias=d["use_bias"])
    if d["cls"] == "DepthwiseConv2D":
        return L.DepthwiseConv2D(tuple(d["kernel"]), strides=tuple(d["strides"]), padding=d["padding"],
                                 dilation_rate=tuple(d["dilation"]), depth_multiplier=d["depth_multiplier"],
                                 use_bias=d["use_bias"])
    return L.Conv2D(d["filters"], tuple(d["kernel"]), strides=tuple(d["strides"]), padding=d["padding"],
                    dilation_rate=tuple(d["dilation"]), use_bias=d["use_bias"])


def child_micro(spec: dict) -> dict:
    """Single-layer int8 micro models, one per signature: {key: file name}."""
    import keras
    import numpy as np

    from converters import to_tflite
    from edge_lowrank.fileio import atomic_write_bytes

    out, made = Path(spec["out_dir"]), {}
    for d in spec["layers"]:
        keras.utils.set_random_seed(SEED)
        m = keras.Sequential([keras.Input(tuple(d["in_shape"]), batch_size=1), micro_layer(d)])
        x = np.random.default_rng(SEED).uniform(-1, 1, (4,) + tuple(d["in_shape"])).astype(np.float32)
        atomic_write_bytes(out / d["file"], to_tflite(m, precision="int8", representative_data=x, equalize=False))
        made[d["key"]] = d["file"]
    return made


def run_child(mode: str, spec: dict, spec_path: Path, timeout: float) -> dict:
    """Run this script in a fresh process on `spec`; its JSON answer (or an error row)."""
    spec_path.parent.mkdir(parents=True, exist_ok=True)
    spec_path.write_text(json.dumps(spec))
    answer = spec_path.with_suffix(".out.json")
    answer.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), mode, str(spec_path), str(answer)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=str(ROOT))
    except subprocess.TimeoutExpired:
        return {"status": "error", "message": f"child timed out after {timeout:.0f} s"}
    if p.returncode != 0 or not answer.exists():
        lines = [ln for ln in (p.stderr or "").strip().splitlines()
                 if ln.strip() and not ln.startswith(("W0000", "I0000", "WARNING: All log"))]
        tail = ([ln for ln in lines if "Error" in ln] or lines)[-1:] or [f"exit {p.returncode}"]
        return {"status": "error", "message": tail[0][:300]}
    return json.loads(answer.read_text())


def child_main(argv) -> int:
    mode, spec_path, answer = argv
    spec = json.loads(Path(spec_path).read_text())
    res = child_one(spec) if mode == "--_one" else child_micro(spec)
    from edge_lowrank.fileio import atomic_write_text

    atomic_write_text(answer, json.dumps(res))
    return 0


# ------------------------------------------------------------------------------------------------ parent


def _fmt_macs(m):
    if m is None:
        return "-"
    return f"{m / 1e9:.2f}G" if m >= 1e9 else f"{m / 1e6:.1f}M"


def _f(v, spec, dash="-"):
    return dash if v is None else format(v, spec)


def table(title: str, head: list[str], rows: list[list], console=None) -> str:
    rows = [[str(c) for c in r] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *rows)] if rows else [len(h) for h in head]
    fmt = lambda r: "  ".join(x.rjust(w) if i else x.ljust(w) for i, (x, w) in enumerate(zip(r, widths)))  # noqa: E731
    lines = [title, fmt(head), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]
    text = "\n".join(lines)
    print(text + "\n", flush=True)
    return text


def variant_path(out: Path, arch: str, size: int, scheme: str, ratio: float, alpha: float) -> str:
    a = "" if alpha == 1.0 else f"-a{alpha:g}"
    return f"{arch}{a}-{size}px/{scheme}-r{ratio:g}"


def produce(args, arch: str, size: int, schemes: list[str], log) -> dict:
    """One child per (arch, scheme), cached: {scheme: child result}."""
    out = Path(args.out)
    rows = {}
    for scheme in ["baseline"] + schemes:
        stem = variant_path(out, arch, size, scheme, args.ratio, args.alpha)
        stem += f"-m{args.rank_multiple}" if scheme != "baseline" and args.rank_multiple != 8 else ""
        result_path = out / f"{stem}.json"
        if result_path.exists():
            try:
                cached = json.loads(result_path.read_text())
                if cached.get("status") == "ok" and (out / cached["tflite_int8"]).exists():
                    cached["cached"] = True
                    rows[scheme] = cached
                    log(f"  {arch} {size}px {scheme}: cached")
                    continue
            except (OSError, ValueError, KeyError):
                pass
        spec = {"arch": arch, "scheme": scheme, "input_size": size, "ratio": args.ratio, "alpha": args.alpha,
                "cp_time_budget": args.cp_time_budget, "rank_multiple": args.rank_multiple, "out_dir": str(out), "int8_name": f"{stem}-int8.tflite",
                "fp32_name": f"{stem}-float32.tflite"}
        t = time.monotonic()
        log(f"  {arch} {size}px {scheme}: rewriting and converting in a child process ...")
        res = run_child("--_one", spec, out / f"{stem}.spec.json", args.child_timeout)
        res.setdefault("arch", arch)
        res.setdefault("scheme", scheme)
        res["wall_s"] = time.monotonic() - t
        res["cached"] = False
        if res.get("status") == "ok":
            from edge_lowrank.fileio import atomic_write_text

            atomic_write_text(result_path, json.dumps(res))
        log(f"    {res.get('status')} in {res['wall_s']:.1f} s" + (f": {res.get('message')}" if res.get("message") else ""))
        rows[scheme] = res
    return rows


def bench_params(args, micro=False):
    from device_bench import BenchParams

    if args.quick:
        return BenchParams(num_threads=1, num_runs=5, min_secs=0.05, warmup_runs=1, warmup_min_secs=0.0, rounds=3)
    if micro:
        return BenchParams(num_threads=1, num_runs=20, min_secs=0.2, warmup_runs=2, warmup_min_secs=0.1, rounds=5)
    return BenchParams(num_threads=1, num_runs=10, min_secs=args.min_secs, warmup_runs=2, warmup_min_secs=0.2,
                       rounds=args.rounds)


def host_bench(args, arch, rows: dict, peaks: dict, log) -> list[dict]:
    """Time every int8 variant and the float32 baseline interleaved; fill speedup, efficiency, MAC/s."""
    from device_bench import bench_models, compare

    out = Path(args.out)
    ok = [s for s, r in rows.items() if r.get("status") == "ok"]
    if "baseline" not in ok:
        return []
    labels = [(s, "int8") for s in ok] + [("baseline", "float32")]
    paths = [str(out / rows[s]["tflite_int8" if p == "int8" else "tflite_float32"]) for s, p in labels]
    log(f"  {arch}: timing {len(paths)} models interleaved on the host (1 thread, XNNPACK) ...")
    t = time.monotonic()
    results = bench_models(paths, bench_params(args), target="host")
    log(f"    {time.monotonic() - t:.1f} s")
    cmp = compare(results, baseline=0)
    base = rows["baseline"]
    table_rows = []
    for (scheme, prec), r, c in zip(labels, results, cmp):
        row = rows[scheme]
        macs = row["macs_after"] if prec == "int8" else base["macs_before"]
        e = {"scheme": scheme, "precision": prec, "median_us": c["median_us"], "speedup": c["speedup"],
             "ci_low": c["ci_low"], "ci_high": c["ci_high"], "ci_method": c["method"], "error": c["error"],
             "mac_ratio": macs / base["macs_before"], "macs": macs, "model": r.model,
             "delegate_partitions": r.delegate_partitions, "nodes_outside_delegate": r.nodes_outside_delegate,
             "model_size_mb": r.model_size_mb}
        e["mac_reduction"] = 1.0 / e["mac_ratio"]
        e["efficiency"] = e["speedup"] / e["mac_reduction"] if e["speedup"] else None
        if row.get("touched_macs_after"):
            e["touched_mac_reduction"] = row["touched_macs_before"] / row["touched_macs_after"]
        if e["median_us"]:
            e["macs_per_s"] = macs / (e["median_us"] * 1e-6)
            pk = peaks.get(prec, (None, ""))[0]
            e["fraction_of_peak"] = e["macs_per_s"] / pk if pk else None
        table_rows.append(e)
    return table_rows


def arm_bench(args, arch, rows: dict, log) -> list[dict]:
    from device_bench import BenchParams, bench_models

    out = Path(args.out)
    ok = [s for s, r in rows.items() if r.get("status") == "ok"]
    if "baseline" not in ok:
        return []
    paths = [str(out / rows[s]["tflite_int8"]) for s in ok]
    log(f"  {arch}: counting {args.arm_profile} instructions of {len(paths)} int8 models under QEMU ...")
    t = time.monotonic()
    params = BenchParams(num_threads=1, num_runs=1, warmup_runs=0, timeout_s=args.child_timeout)
    results = bench_models(paths, params, target=f"qemu:{args.arm_profile}")
    log(f"    {time.monotonic() - t:.1f} s")
    base_macs = rows["baseline"]["macs_before"]
    base_instr = results[0].instructions_per_inference
    out_rows = []
    for s, r in zip(ok, results):
        e = {"scheme": s, "instructions_per_inference": r.instructions_per_inference, "error": r.error,
             "mac_ratio": rows[s]["macs_after"] / base_macs}
        if r.instructions_per_inference and base_instr:
            e["speedup"] = base_instr / r.instructions_per_inference
            e["efficiency"] = e["speedup"] * e["mac_ratio"]
            e["macs_per_instruction"] = rows[s]["macs_after"] / r.instructions_per_inference
        out_rows.append(e)
    return out_rows


def per_op_profile(args, arch, rows: dict, host_rows: list[dict], log) -> dict:
    """Micro-model profile of the factor layers of every scheme whose efficiency is low."""
    from device_bench import bench_models

    out = Path(args.out)
    low = [h for h in host_rows if h["precision"] == "int8" and h["scheme"] != "baseline"
           and h.get("efficiency") is not None and h["efficiency"] < LOW_EFFICIENCY]
    if not low or args.profile_max_ops <= 0:
        return {}
    wanted = {}  # key -> signature
    per_scheme_keys = {}
    for h in low:
        r = rows[h["scheme"]]
        agg = {}
        for d in r.get("new_layers", []) + r.get("replaced_layers", []):
            agg.setdefault(d["key"], [d, 0])[1] += d["macs"]
        ranked = [k for k, _ in sorted(agg.items(), key=lambda kv: -kv[1][1])]
        first_of_kind, seen = [], set()  # the biggest shape of every op kind first, then by MACs
        for k in ranked:
            kind = (agg[k][0]["kind"], agg[k][0] in r.get("replaced_layers", []))
            if kind not in seen:
                seen.add(kind)
                first_of_kind.append(k)
        keys = (first_of_kind + [k for k in ranked if k not in first_of_kind])[:args.profile_max_ops]
        per_scheme_keys[h["scheme"]] = keys
        for k in keys:
            wanted[k] = agg[k][0]
    micro_dir = out / "micro"
    specs, files = [], {}
    for k, d in wanted.items():
        name = "micro/" + hashlib.sha1(k.encode()).hexdigest()[:16] + ".tflite"
        files[k] = name
        if not (out / name).exists():
            specs.append(dict(d, file=name))
    if specs:
        log(f"  {arch}: converting {len(specs)} single-layer int8 micro models ...")
        t = time.monotonic()
        res = run_child("--_micro", {"out_dir": str(out), "layers": specs}, micro_dir / f"{arch}.spec.json",
                        args.child_timeout)
        log(f"    {time.monotonic() - t:.1f} s" + (f": {res.get('message')}" if res.get("status") == "error" else ""))
    keys = [k for k in wanted if (out / files[k]).exists()]
    if not keys:
        return {}
    log(f"  {arch}: timing {len(keys)} micro models interleaved ...")
    t = time.monotonic()
    results = bench_models([str(out / files[k]) for k in keys], bench_params(args, micro=True), target="host")
    log(f"    {time.monotonic() - t:.1f} s")
    us = {k: (r.inference_us.median if r.inference_us else None) for k, r in zip(keys, results)}
    profile = {}
    for h in low:
        scheme, r = h["scheme"], rows[h["scheme"]]
        kinds = {}
        for role, layers in (("factor", r.get("new_layers", [])), ("replaced", r.get("replaced_layers", []))):
            for d in layers:
                label = d["kind"] + (" (original, replaced)" if role == "replaced" else "")
                k = kinds.setdefault(label, {"kind": label, "role": role, "layers": 0, "macs": 0, "us": 0.0,
                                             "macs_timed": 0, "shapes": set()})
                k["layers"] += 1
                k["macs"] += d["macs"]
                k["shapes"].add(d["key"])
                if us.get(d["key"]):
                    k["us"] += us[d["key"]]
                    k["macs_timed"] += d["macs"]
        model_us = h["median_us"]
        for k in kinds.values():
            k["shapes"] = sorted(k["shapes"])
            k["gmac_per_s"] = k["macs_timed"] / (k["us"] * 1e3) if k["us"] else None
            k["coverage"] = k["macs_timed"] / k["macs"] if k["macs"] else None
            k["share_of_model_time"] = (k["us"] / model_us) if (k["role"] == "factor" and model_us
                                                                 and k["us"]) else None
        fac = [k for k in kinds.values() if k["role"] == "factor"]
        rep = [k for k in kinds.values() if k["role"] == "replaced"]
        f_us, f_m = sum(k["us"] for k in fac), sum(k["macs_timed"] for k in fac)
        r_us, r_m = sum(k["us"] for k in rep), sum(k["macs_timed"] for k in rep)
        slow = min((k for k in fac if k["gmac_per_s"]), key=lambda k: k["gmac_per_s"], default=None)
        why = []
        if r_us and f_us:
            why.append(f"the profiled factor layers take {f_us:.0f} us for {f_m / 1e6:.0f} MMAC "
                       f"({f_m / f_us / 1e3:.1f} GMAC/s) vs {r_us:.0f} us for {r_m / 1e6:.0f} MMAC "
                       f"({r_m / r_us / 1e3:.1f} GMAC/s) in the dense convs they replace: "
                       f"{r_m / max(f_m, 1):.2f}x fewer MACs but only {r_us / f_us:.2f}x less time")
        if slow and r_m and r_us and slow["gmac_per_s"] < 0.7 * (r_m / r_us / 1e3):
            why.append(f"slowest kind: {slow['kind']} at {slow['gmac_per_s']:.1f} GMAC/s, "
                       f"{(slow['share_of_model_time'] or 0) * 100:.0f}% of the model's time")
        touched = r.get("touched_macs_before", 0) / max(r["macs_before"], 1)
        if touched < 0.9:
            why.append(f"the scheme touches layers holding {touched * 100:.0f}% of the MACs; the rest "
                       f"run unchanged")
        # Extrapolate unprofiled shapes at their kind's measured GMAC/s, then predict the model's time:
        # baseline - replaced layers + factor layers (other layers and non-MAC ops unchanged).
        r_est = sum(k["us"] * k["macs"] / k["macs_timed"] for k in rep if k["macs_timed"])
        f_est = sum(k["us"] * k["macs"] / k["macs_timed"] for k in fac if k["macs_timed"])
        base_us = next((x["median_us"] for x in host_rows if x["scheme"] == "baseline"
                        and x["precision"] == "int8"), None)
        pred = None
        if base_us and r_est and base_us > r_est:
            pred = {"replaced_share_of_baseline_time": r_est / base_us,
                    "replaced_share_of_baseline_macs": r.get("touched_macs_before", 0) / max(r["macs_before"], 1),
                    "predicted_speedup": base_us / (base_us - r_est + f_est),
                    "speedup_if_factors_were_free": base_us / (base_us - r_est)}
            why.insert(0, f"the replaced layers hold {pred['replaced_share_of_baseline_macs'] * 100:.0f}% of the "
                          f"baseline's MACs but only {pred['replaced_share_of_baseline_time'] * 100:.0f}% of its "
                          f"time (micro models); removing them entirely would give at most "
                          f"{pred['speedup_if_factors_were_free']:.2f}x, and with the factor layers' "
                          f"{f_est:.0f} us the profile predicts {pred['predicted_speedup']:.2f}x "
                          f"(measured {h['speedup']:.2f}x)")
        micro_eff = (r_us / f_us) / (r_m / f_m) if (r_us and f_us and r_m and f_m) else None
        if micro_eff is not None:
            why.insert(0, f"efficiency on the profiled touched layers (micro models): {micro_eff:.2f}")
        profile[scheme] = {"efficiency": h["efficiency"], "touched_efficiency_micro": micro_eff, "prediction": pred, "kinds": sorted(kinds.values(), key=lambda k: -k["us"]),
                           "why": why, "micro_us": {k: us.get(k) for k in per_scheme_keys[scheme]}}
    return profile


def parse_args(argv):
    ap = _Parser(prog="bench_efficiency.py", description=__doc__.splitlines()[0])
    ap.add_argument("--archs", default=",".join(ARCHS), help=f"comma list of {', '.join(ARCHS)}")
    ap.add_argument("--schemes", default=",".join(SCHEMES), help=f"comma list of {', '.join(SCHEMES)}")
    ap.add_argument("--ratio", type=float, default=0.5, help="target whole-model MAC ratio (0, 1)")
    ap.add_argument("--rank-multiple", type=int, default=8, help="ranks / widths rounded up to this multiple")
    ap.add_argument("--input-size", type=int, default=224, help="square input size (>= 32)")
    ap.add_argument("--arm-input-size", type=int, default=None, help="input size for QEMU (default: --input-size)")
    ap.add_argument("--alpha", type=float, default=1.0, help="MobileNetV2 width multiplier")
    arm = ap.add_mutually_exclusive_group()
    arm.add_argument("--arm", dest="arm", action="store_true", default=None,
                     help="count ARM instructions under QEMU (default: when QEMU is set up)")
    arm.add_argument("--no-arm", dest="arm", action="store_false")
    ap.add_argument("--arm-profile", default="a76", help="QEMU CPU profile (a53, a72, a76, a710)")
    ap.add_argument("--out", default="runs/bench_efficiency", help="folder for models and cached results")
    ap.add_argument("--json", default=None, help="results file (default: OUT/results.json)")
    ap.add_argument("--cp-time-budget", type=float, default=3.0, help="seconds of CP-ALS per layer")
    ap.add_argument("--profile-max-ops", type=int, default=12, help="distinct layer shapes to profile per scheme")
    ap.add_argument("--min-secs", type=float, default=0.5, help="timed seconds per model per round")
    ap.add_argument("--rounds", type=int, default=8, help="interleaved rounds")
    ap.add_argument("--child-timeout", type=float, default=3600.0, help="seconds per child process / QEMU run")
    ap.add_argument("--quick", action="store_true", help="few, short timing rounds (smoke tests)")
    args = ap.parse_args(argv)
    args.archs = [a.strip().lower() for a in args.archs.split(",") if a.strip()]
    args.schemes = [s.strip().lower() for s in args.schemes.split(",") if s.strip()]
    bad = [a for a in args.archs if a not in ARCHS + TEST_ARCHS]
    if bad or not args.archs:
        raise ArgError(f"invalid --archs {bad or args.archs}: expected a comma list of {', '.join(ARCHS)}")
    bad = [s for s in args.schemes if s not in SCHEMES]
    if bad:
        raise ArgError(f"invalid --schemes {bad}: expected a comma list of {', '.join(SCHEMES)}")
    if not 0.0 < args.ratio < 1.0:
        raise ArgError(f"invalid --ratio {args.ratio}: expected a float in (0, 1)")
    for name in ("input_size", "arm_input_size"):
        v = getattr(args, name)
        if v is not None and v < 32:
            raise ArgError(f"invalid --{name.replace('_', '-')} {v}: keras.applications need at least 32")
    if not 0.0 < args.alpha <= 1.4:
        raise ArgError(f"invalid --alpha {args.alpha}: expected a float in (0, 1.4]")
    if args.cp_time_budget <= 0 or args.min_secs < 0 or args.rounds < 1 or args.child_timeout <= 0:
        raise ArgError("invalid timing argument: --cp-time-budget and --child-timeout must be > 0, "
                       "--min-secs >= 0, --rounds >= 1")
    if args.rank_multiple < 1:
        raise ArgError(f"invalid --rank-multiple {args.rank_multiple}: expected an int >= 1")
    if args.profile_max_ops < 0:
        raise ArgError(f"invalid --profile-max-ops {args.profile_max_ops}: expected an int >= 0")
    prof = args.arm_profile.lower()
    args.arm_profile = prof if prof.startswith("cortex-") else f"cortex-{prof}"
    from device_bench.qemu import PROFILES

    if args.arm_profile not in PROFILES:
        raise ArgError(f"invalid --arm-profile {prof}: expected one of "
                       f"{', '.join(p.replace('cortex-', '') for p in PROFILES)}")
    args.arm_input_size = args.arm_input_size or args.input_size
    args.json = args.json or str(Path(args.out) / "results.json")
    return args


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("--_one", "--_micro"):
        return child_main(argv)
    try:
        args = parse_args(argv)
    except ArgError as e:
        print(f"bench_efficiency.py: error: {e}", file=sys.stderr)
        return 2
    from device_bench.sysinfo import cpu_model, peak_macs_per_s

    if args.arm is None:
        from device_bench import qemu

        args.arm = bool(qemu.available()[0])
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    Path(args.out).mkdir(parents=True, exist_ok=True)
    peaks = {p: peak_macs_per_s(p) for p in ("int8", "float32")}
    t_start = time.monotonic()
    settings = {k: v for k, v in vars(args).items()}
    header = (f"settings: archs {','.join(args.archs)}; schemes {','.join(args.schemes)}; target MAC ratio "
              f"{args.ratio}; input {args.input_size}x{args.input_size}"
              + (f" (MobileNetV2 alpha {args.alpha})" if args.alpha != 1.0 else "")
              + f"; weights=None seed {SEED}; int8 calibrated on {CALIB_SAMPLES} random images; host: "
              f"{cpu_model()}, 1 thread, XNNPACK, {'quick timing' if args.quick else f'{args.rounds} interleaved rounds'}"
              + (f"; ARM: {args.arm_profile} under QEMU at {args.arm_input_size}x{args.arm_input_size}"
                 if args.arm else "; ARM: off"))
    print(header + "\n")
    for p, (v, why) in peaks.items():
        print(f"peak ESTIMATE ({p}): {v / 1e9:.1f} GMAC/s per core - {why}")
    print()
    report = {"settings": settings, "header": header, "peak_estimate": {p: {"macs_per_s": v, "assumption": why}
                                                                           for p, (v, why) in peaks.items()},
              "cpu": cpu_model(), "archs": {}}

    def save():
        from edge_lowrank.fileio import atomic_write_text

        report["wall_s"] = time.monotonic() - t_start
        atomic_write_text(args.json, json.dumps(report, indent=1, default=str))

    for arch in args.archs:
        a = {"input_size": args.input_size}
        report["archs"][arch] = a
        log(f"{arch}:")
        rows = produce(args, arch, args.input_size, args.schemes, log)
        a["variants"] = rows
        a["host"] = host_bench(args, arch, rows, peaks, log)
        save()
        if args.arm:
            arm_rows = rows if args.arm_input_size == args.input_size else \
                produce(args, arch, args.arm_input_size, args.schemes, log)
            try:
                a["arm"] = arm_bench(args, arch, arm_rows, log)
            except Exception as e:  # QEMU missing or broken: the host figures still stand
                a["arm"] = []
                a["arm_error"] = " ".join(str(e).split())[:300]
                log(f"    ARM skipped: {a['arm_error']}")
            save()
        a["profile"] = per_op_profile(args, arch, rows, a["host"], log)
        save()
        print_arch(args, arch, a, peaks)
    print_throughput(report)
    save()
    print(f"wall time {time.monotonic() - t_start:.0f} s; JSON: {args.json}")
    return 0


def print_arch(args, arch, a, peaks):
    rows, host = a["variants"], a["host"]
    by = {(h["scheme"], h["precision"]): h for h in host}
    arm = {r["scheme"]: r for r in a.get("arm", [])}
    title = (f"== {arch} @{args.input_size}x{args.input_size}: efficiency = speedup vs int8 baseline / MAC "
             f"reduction (host: 1 thread, XNNPACK"
             + (f"; ARM: {args.arm_profile} instructions @{args.arm_input_size}px" if args.arm else "") + ")")
    head = ["variant", "MACs", "MAC ratio", "touched red.", "median us", "speedup", "95% CI", "efficiency"]
    if args.arm:
        head += ["ARM instr", "ARM speedup", "ARM eff."]
    out = []
    for scheme, r in rows.items():
        h = by.get((scheme, "int8"))
        if r.get("status") != "ok" or h is None:
            out.append([scheme, "-", "-", "-", "-", "-", "-", r.get("status", "error") + ": "
                        + (r.get("message") or "")[:90]] + (["", "", ""] if args.arm else []))
            continue
        ci = f"{h['ci_low']:.2f}-{h['ci_high']:.2f}" if h.get("ci_low") else "-"
        line = [f"{scheme}-int8", _fmt_macs(h["macs"]), f"{h['mac_ratio']:.3f}",
                _f(h.get("touched_mac_reduction"), ".2f"), _f(h["median_us"], ".0f"),
                _f(h["speedup"], ".2f") + ("x" if h["speedup"] else ""), ci, _f(h["efficiency"], ".2f")]
        if args.arm:
            ar = arm.get(scheme, {})
            line += [_fmt_macs(ar.get("instructions_per_inference")), _f(ar.get("speedup"), ".2f"),
                     _f(ar.get("efficiency"), ".2f")]
        out.append(line)
    h = by.get(("baseline", "float32"))
    if h:
        out.append(["baseline-float32", _fmt_macs(h["macs"]), "1.000", "-", _f(h["median_us"], ".0f"),
                    _f(h["speedup"], ".2f") + "x", "-", "-"] + (["", "", ""] if args.arm else []))
    table(title, head, out)
    warn = [f"  {s}: {w}" for s, r in rows.items() for w in r.get("warnings", [])]
    if warn:
        print("warnings from compress (target not reached; efficiency uses the MAC ratio reached):")
        print("\n".join(warn) + "\n")
    # Part 3: MAC/s vs peak estimate.
    out = []
    for h in host:
        if h.get("macs_per_s"):
            out.append([f"{h['scheme']}-{h['precision']}", _fmt_macs(h["macs"]), f"{h['median_us']:.0f}",
                        f"{h['macs_per_s'] / 1e9:.1f}", f"{peaks[h['precision']][0] / 1e9:.1f}",
                        _f(h["fraction_of_peak"] * 100 if h.get("fraction_of_peak") else None, ".0f")])
    fp, i8 = by.get(("baseline", "float32")), by.get(("baseline", "int8"))
    extra = ""
    if fp and i8 and fp.get("median_us") and i8.get("median_us"):
        extra = f" (int8 baseline is {fp['median_us'] / i8['median_us']:.2f}x faster than float32 on this host)"
    table(f"-- {arch}: achieved MAC/s vs the per-core peak ESTIMATE{extra}",
          ["model", "MACs", "median us", "GMAC/s", "peak est. GMAC/s", "% of peak"], out)
    # Part 4: why.
    for scheme, p in a.get("profile", {}).items():
        out = []
        for k in p["kinds"]:
            out.append([k["kind"], k["layers"], len(k["shapes"]), _fmt_macs(k["macs"]),
                        f"{(k['coverage'] or 0) * 100:.0f}%", f"{k['us']:.0f}", _f(k["gmac_per_s"], ".1f"),
                        _f(k["share_of_model_time"] * 100 if k["share_of_model_time"] is not None else None, ".0f")])
        table(f"-- {arch} {scheme}: efficiency {p['efficiency']:.3f} < {LOW_EFFICIENCY}; per-op profile from "
              f"single-layer int8 micro models (timed shapes cover the given % of MACs)",
              ["op kind", "layers", "shapes", "MACs", "timed", "us (sum)", "GMAC/s", "% model time"], out)
        for w in p["why"]:
            print(f"  why: {w}")
        print()


def print_throughput(report):
    out = []
    for arch, a in report["archs"].items():
        for scheme, r in a["variants"].items():
            if r.get("status") != "ok":
                continue
            out.append([arch, scheme, _f(r.get("compress_s"), ".1f"), _f(r.get("to_tflite_int8_s"), ".1f"),
                        _f(r.get("to_tflite_float32_s"), ".1f"), _f(r.get("rss_after_build_mb"), ".0f"),
                        _f(r.get("peak_rss_after_compress_mb"), ".0f"), _f(r.get("peak_rss_mb"), ".0f"),
                        "yes" if r.get("cached") else ""])
    table("== tool throughput: one fresh child process per (architecture, scheme); peak RSS = VmHWM "
          "(includes TensorFlow, ~0.6 GB)",
          ["arch", "scheme", "compress s", "to_tflite int8 s", "to_tflite fp32 s", "RSS after build MB",
           "peak after compress MB", "peak MB", "cached"], out)


if __name__ == "__main__":
    raise SystemExit(main())
