"""The accuracy-latency frontier: every scheme at several MAC budgets, int8, fine-tuned, on the sample models.

    python benchmarks/bench_frontier.py                                  # both sample models, 6 schemes, 3 budgets
    python benchmarks/bench_frontier.py --models resnet --budgets 2,3 --schemes spatial,channel,tucker2 --targets
    python benchmarks/bench_frontier.py --models my_cnn.keras --finetune-epochs 2 --finetune-samples 0
    python benchmarks/bench_frontier.py --quick --no-arm                 # smoke test: one model, 2 budgets, 2 schemes

For each (model, budget) it runs the `edge-lowrank run` pipeline (`edge_lowrank.pipeline.stages.Pipeline`)
with `target_mac_ratio = 1 / budget` (a whole-model MAC budget: `compress` counts the layers it does not
rewrite as a fixed cost) into its own folder `<out>/<model>/r<budget>`, so an interrupted run resumes from
the stage cache. Only what the frontier needs is built: int8 exports of the schemes, the float32 and int8
baseline once per model (in the folder of the first budget), no C arrays, no per-folder host benchmark.
Then every int8 `.tflite` of a model (baseline and every scheme at every budget) and the float32 baseline
are timed together in ONE interleaved `device_bench.bench.bench_models` call (LiteRT + XNNPACK, one thread),
so speedups compare across budgets. ARM cortex-a76 instructions per inference come from the pipeline's
QEMU stages; top-1 is the int8 model's on the test images (all 10,000 unless --eval-samples), compared with
the float Keras baseline's top-1 on the same images.

Prints one table per model, a check line per budget for `auto` (when the pipeline knows that scheme), and
with --targets issue 8's targets for the sample ResNet; writes a JSON file (--json) and one Pareto plot per
model (`<out>/frontier_<model>.png`). `weight-svd` only rewrites 1x1 convs and Dense layers: on the ResNet
it cannot reach the budget, and its row shows the MAC ratio it reached.

Cost on the shared 2-core VM (1 epoch of distillation on 10,000 images, all 10,000 test images, ARM on):
one (model, budget) pipeline run took 10 min for the ResNet with 5 schemes and 15 min for the VGG with 6
(load average 4-6 from other jobs; about 80-150 s per scheme: fine-tuning, int8 export + top-1, QEMU).
The default 3 budgets (1.5,2.5,4) on both models is then about 45 min on an idle machine, more under
load; `--finetune-samples 5000` or fewer `--budgets` make it shorter.
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
from pathlib import Path  # noqa: E402

PROG = "bench_frontier.py"
DEFAULT_SCHEMES = "spatial,channel,tucker2,cp,weight-svd,auto"
DEFAULT_BUDGETS = "1.5,2.5,4"  # 4 budgets x 6 schemes x 2 models did not fit ~40 min on 2 cores
SAMPLES = {"resnet": "resnet_fmnist", "vgg": "vgg_fmnist", "resnet_fmnist": "resnet_fmnist",
           "vgg_fmnist": "vgg_fmnist"}
ARM_PROFILE = "cortex-a76"
SKIPPED = "skipped by bench_frontier (not needed for the frontier)"
# Issue 8's targets for the sample ResNet.
TARGET_MAX_DROP_PP, TARGET_VS_INT8, TARGET_VS_FP32, TARGET_INSTR = 0.5, 2.0, 7.0, 2.5


class ArgError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        raise ArgError(message)


def _parse(argv):
    ap = _Parser(prog=PROG, description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet,vgg", help="sample model names (resnet, vgg) or .keras paths")
    ap.add_argument("--schemes", default=DEFAULT_SCHEMES, help="comma-separated schemes (auto when available)")
    ap.add_argument("--budgets", default=DEFAULT_BUDGETS, help="MAC reduction factors, e.g. 1.5,2,3,4")
    ap.add_argument("--finetune-epochs", type=int, default=1, help="distillation epochs per variant (0 skips)")
    ap.add_argument("--finetune-samples", type=int, default=10000, help="training images (0: all 60,000)")
    ap.add_argument("--eval-samples", type=int, default=None, help="test images for top-1 (default: all)")
    ap.add_argument("--bench-secs", type=float, default=1.0, help="host timing: minimum timed seconds per model")
    ap.add_argument("--seed", type=int, default=0, help="seed of the fine-tuning (order, initialisation): rerun "
                    "with others to see how far one epoch's top-1 moves for the same rewrite")
    ap.add_argument("--no-arm", action="store_true", help="skip the cortex-a76 instruction counts (QEMU)")
    ap.add_argument("--targets", action="store_true", help="check issue 8's targets on the sample ResNet")
    ap.add_argument("--executor", default="local", choices=("local", "ray"),
                    help="where each pipeline's model and export stages run (docs/ray.md)")
    ap.add_argument("--ray-address", default=None, help="with --executor ray: HOST:PORT of the cluster's head "
                    "(default: a Ray started on this machine)")
    ap.add_argument("--out", default="runs/frontier", help="output folder (one pipeline folder per model/budget)")
    ap.add_argument("--json", default=None, help="JSON file (default: <out>/frontier.json)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: first model only, budgets 2,3, schemes spatial,channel, 1000 test images")
    args = ap.parse_args(argv)
    if args.quick:
        args.models = args.models.split(",")[0]
        if args.budgets == DEFAULT_BUDGETS:
            args.budgets = "2,3"
        if args.schemes == DEFAULT_SCHEMES:
            args.schemes = "spatial,channel"
        if args.eval_samples is None:
            args.eval_samples = 1000
        if args.finetune_samples == 10000:
            args.finetune_samples = 2000
    return args


def _resolve(args):
    """Validate everything before any work: (models [(name, path)], schemes, budgets, notes)."""
    from edge_lowrank.pipeline.config import ALL_SCHEMES
    from sample_models import sample_model_path

    models = []
    for m in [m.strip() for m in args.models.split(",") if m.strip()]:
        if m in SAMPLES:
            models.append((SAMPLES[m].split("_")[0], sample_model_path(SAMPLES[m])))
        elif m.endswith((".keras", ".h5")) and Path(m).is_file():
            models.append((Path(m).stem, Path(m)))
        else:
            raise ArgError(f"Invalid value for --models: {m!r} is neither a sample model "
                           f"({', '.join(SAMPLES)}) nor an existing .keras/.h5 file.")
    if not models:
        raise ArgError("Invalid value for --models: empty.")
    if len({n for n, _ in models}) != len(models):
        raise ArgError(f"Invalid value for --models: two models share a name ({args.models}).")
    schemes = [s.strip() for s in args.schemes.split(",") if s.strip()]
    bad = [s for s in schemes if s not in ALL_SCHEMES and s != "auto"]
    if not schemes or bad or len(set(schemes)) != len(schemes):
        raise ArgError(f"Invalid value for --schemes: {args.schemes!r}. Expected distinct names from "
                       f"{', '.join(ALL_SCHEMES)}, auto.")
    notes = []
    if "auto" in schemes and "auto" not in ALL_SCHEMES:
        schemes.remove("auto")
        notes.append("note: scheme `auto` is not in this pipeline yet (edge_lowrank.pipeline.config.ALL_SCHEMES); "
                     "left out")
        if not schemes:
            raise ArgError("Invalid value for --schemes: only `auto`, which this pipeline does not have yet.")
    try:
        budgets = sorted({float(b) for b in args.budgets.split(",") if b.strip()})
    except ValueError:
        raise ArgError(f"Invalid value for --budgets: {args.budgets!r}. "
                       f"Expected numbers > 1, e.g. 1.5,2,3,4.") from None
    if not budgets or any(not 1.0 < b <= 1000 for b in budgets):
        raise ArgError(f"Invalid value for --budgets: {args.budgets!r}. Expected MAC reduction factors > 1.")
    if args.finetune_epochs < 0:
        raise ArgError(f"Invalid value for --finetune-epochs: {args.finetune_epochs}. Expected an int >= 0.")
    if args.finetune_samples < 0:
        raise ArgError(f"Invalid value for --finetune-samples: {args.finetune_samples}. Expected an int >= 0.")
    if args.eval_samples is not None and args.eval_samples <= 0:
        raise ArgError(f"Invalid value for --eval-samples: {args.eval_samples}. Expected a positive int.")
    if args.ray_address is not None and args.executor != "ray":
        raise ArgError("--ray-address needs --executor ray.")
    if not args.bench_secs > 0:
        raise ArgError(f"Invalid value for --bench-secs: {args.bench_secs}. Expected seconds > 0.")
    return models, schemes, budgets, notes


def _budget_tag(b: float) -> str:
    return f"r{b:g}"


def _pipeline_class():
    from edge_lowrank.pipeline.stages import Pipeline

    class FrontierPipeline(Pipeline):
        """The stock pipeline, minus what the frontier does not use (the stages themselves are untouched).

        - float32 exports of the schemes (the frontier is int8), and the baseline exports except in one folder
          per model (`with_baseline`), are replaced by a skipped record without a stage;
        - the per-folder host benchmark is skipped: all budgets of a model are timed together afterwards.
        """

        def __init__(self, cfg, with_baseline: bool):
            super().__init__(cfg)
            self.with_baseline = with_baseline

        def export_skipped(self, vid, scheme, precision, keras_rel):  # asked by both executors
            keep = self.with_baseline if scheme == "baseline" else precision == "int8"
            if not keep:
                return {"id": vid, "scheme": scheme, "precision": precision, "keras": keras_rel, "tflite": None,
                        "size_bytes": None, "error": SKIPPED}
            return None

        def host_bench_wanted(self):
            return False

    return FrontierPipeline


def run_budget(model_path, out_dir, schemes, budget, args, with_baseline: bool) -> dict:
    """One pipeline run; returns its report dict (plus wall time)."""
    from edge_lowrank.pipeline.config import RunConfig

    cfg = RunConfig(model=str(model_path), out=str(out_dir), schemes=",".join(schemes),
                    target_mac_ratio=1.0 / budget, finetune_epochs=args.finetune_epochs,
                    finetune_samples=args.finetune_samples or None, eval_samples=args.eval_samples,
                    arm="none" if args.no_arm else ARM_PROFILE, arm_precisions="int8", c_arrays=False,
                    executor=args.executor, ray_address=args.ray_address,
                    max_accuracy_drop=None, qat="none", seed=args.seed).validate()  # post-training int8
    t0 = time.monotonic()
    report = _pipeline_class()(cfg, with_baseline).run()
    report.pop("_outcome", None)
    report["_wall_s"] = round(time.monotonic() - t0, 1)
    return report


def _stage_sums(timings: dict) -> dict:
    sums = {}
    for name, s in timings.items():
        if name == "total":
            continue
        kind = name.split(":")[0]
        sums[kind] = round(sums.get(kind, 0.0) + s, 1)
    return sums


def _ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def frontier_model(name, path, schemes, budgets, args) -> dict:
    """Every budget of one model through the pipeline, then one interleaved host benchmark of all files."""
    from device_bench.bench import bench_models
    from device_bench.results import BenchParams

    out_root = Path(args.out) / name
    runs, rows = [], []
    base = None
    for i, b in enumerate(budgets):
        folder = out_root / _budget_tag(b)
        print(f"[{name} {b:g}x] pipeline -> {folder}", flush=True)
        rep = run_budget(path, folder, schemes, b, args, with_baseline=i == 0)
        timings = rep["timings"]["stages_run_now_s"]
        runs.append({"budget": b, "target_mac_ratio": round(1 / b, 6), "out": str(folder),
                     "wall_s": rep["_wall_s"], "stages_run_now_s": timings, "stage_sums_s": _stage_sums(timings)})
        print(f"[{name} {b:g}x] done in {rep['_wall_s']:.0f} s (stages run now: "
              + ", ".join(f"{k} {v:.0f} s" for k, v in _stage_sums(timings).items()) + ")", flush=True)
        variants = {v["id"]: v for v in rep["variants"]}
        if i == 0:
            b32, b8 = variants["baseline-float32"], variants["baseline-int8"]
            for v in (b32, b8):
                if v.get("error"):
                    raise RuntimeError(f"{name}: the baseline export {v['id']} failed: {v['error']}")
            base = {"params": rep["model"]["params"], "macs": rep["model"]["macs"],
                    "keras_top1": b32["top1_keras"], "fp32_tflite_top1": b32["top1"], "int8_top1": b8["top1"],
                    "fp32_tflite": str(folder / b32["files"]["tflite"]),
                    "int8_tflite": str(folder / b8["files"]["tflite"]),
                    "int8_size_bytes": b8["size_bytes"], "fp32_size_bytes": b32["size_bytes"],
                    "int8_a76_instructions": (b8["arm"].get(ARM_PROFILE) or {}).get("instructions"),
                    "eval_n": rep["data"]["test"]["n"], "arm": rep["arm"]}
        status = {s["scheme"]: s for s in rep["schemes"]}
        for s in schemes:
            st = status.get(s) or {}
            v = variants.get(f"{s}-int8") or {}
            arm = (v.get("arm") or {}).get(ARM_PROFILE) or {}
            rows.append({"scheme": s, "budget": b, "status": st.get("status"), "message": st.get("message"),
                         "params": v.get("params"), "macs": v.get("macs"),
                         "mac_ratio": _ratio(v.get("macs"), rep["model"]["macs"]),
                         "size_bytes": v.get("size_bytes"), "top1": v.get("top1"), "top1_keras": v.get("top1_keras"),
                         "tflite": str(folder / v["files"]["tflite"]) if v.get("files", {}).get("tflite") else None,
                         "a76_instructions": arm.get("instructions"), "arm_error": arm.get("error"),
                         "error": v.get("error") if st.get("status") == "ok" else None})

    # One interleaved host benchmark: fp32 baseline, int8 baseline, every int8 variant of every budget.
    timed = [r for r in rows if r["tflite"]]
    paths = [base["fp32_tflite"], base["int8_tflite"]] + [r["tflite"] for r in timed]
    print(f"[{name}] timing {len(paths)} .tflite files together (interleaved, 1 thread) ...", flush=True)
    t0 = time.monotonic()
    params = BenchParams(num_threads=1, num_runs=50, min_secs=args.bench_secs)
    results = bench_models(paths, params, target="host", interleave=True)
    bench_wall = round(time.monotonic() - t0, 1)
    med = [None if r.error or r.inference_us is None else r.inference_us.median for r in results]
    errs = [r.error for r in results]
    base["fp32_median_us"], base["int8_median_us"] = med[0], med[1]
    base["fp32_bench_error"], base["int8_bench_error"] = errs[0], errs[1]
    for r, m, e in zip(timed, med[2:], errs[2:]):
        r["host_median_us"], r["bench_error"] = m, e
    b8, b32, bi = base["int8_median_us"], base["fp32_median_us"], base["int8_a76_instructions"]
    keras_top1 = base["keras_top1"]
    base["int8_speedup_vs_fp32"] = _ratio(b32, b8)
    for r in rows:
        m = r.get("host_median_us")
        r.setdefault("host_median_us", None)
        r["speedup_vs_int8"] = _ratio(b8, m)
        r["speedup_vs_fp32"] = _ratio(b32, m)
        r["a76_ratio"] = _ratio(r["a76_instructions"], bi)
        r["drop_pp"] = None if r["top1"] is None or keras_top1 is None else (keras_top1 - r["top1"]) * 100
    return {"name": name, "path": str(path), "baseline": base, "rows": rows, "runs": runs,
            "bench": {"wall_s": bench_wall, "files": len(paths), "params": {"num_threads": 1, "num_runs": 50,
                                                                           "min_secs": args.bench_secs}}}


# -- printing ---------------------------------------------------------------------------------------------------
def _f(v, spec, none="-"):
    return none if v is None else format(v, spec)


def _fmt_count(n):
    if n is None:
        return "-"
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k"


def print_table(m: dict) -> None:
    base = m["baseline"]
    head = ["scheme", "budget", "MAC ratio", "params", "int8 top-1 %", "drop pp", "host µs", "vs int8", "vs fp32",
            "a76 instr", "ratio"]
    lines = [["float Keras", "-", "1.000", _fmt_count(base["params"]), _f(base["keras_top1"] * 100, ".2f") + " (Keras)",
              "0.00", "-", "-", "-", "-", "-"],
             ["baseline-fp32", "-", "1.000", _fmt_count(base["params"]), _f(base["fp32_tflite_top1"] * 100, ".2f"),
              _f((base["keras_top1"] - base["fp32_tflite_top1"]) * 100, ".2f"), _f(base["fp32_median_us"], ".1f"),
              _f(_ratio(base["int8_median_us"], base["fp32_median_us"]), ".2f") + "x", "1.00x", "-", "-"],
             ["baseline-int8", "-", "1.000", _fmt_count(base["params"]), _f(base["int8_top1"] * 100, ".2f"),
              _f((base["keras_top1"] - base["int8_top1"]) * 100, ".2f"), _f(base["int8_median_us"], ".1f"), "1.00x",
              _f(base["int8_speedup_vs_fp32"], ".2f") + "x", _fmt_count(base["int8_a76_instructions"]), "1.00x"]]
    for r in m["rows"]:
        if r["status"] != "ok" or r["error"]:
            why = f"{r['status']}: {(r['message'] or r['error'] or '')[:60]}"
            lines.append([r["scheme"], f"{r['budget']:g}x", "-", "-", why,
                          "", "", "", "", "", ""])
            continue
        lines.append([r["scheme"], f"{r['budget']:g}x", _f(r["mac_ratio"], ".3f"), _fmt_count(r["params"]),
                      _f(None if r["top1"] is None else r["top1"] * 100, ".2f"), _f(r["drop_pp"], ".2f"),
                      _f(r["host_median_us"], ".1f"), _f(r["speedup_vs_int8"], ".2f") + "x",
                      _f(r["speedup_vs_fp32"], ".2f") + "x", _fmt_count(r["a76_instructions"]),
                      _f(r["a76_ratio"], ".2f") + ("x" if r["a76_ratio"] is not None else "")])
    print(f"\n## {m['name']} ({m['path']}): {_fmt_count(base['macs'])} MACs, top-1 on {base['eval_n']} test images; "
          f"host: LiteRT + XNNPACK, 1 thread, {m['bench']['files']} files interleaved")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for ln in lines:
        print("| " + " | ".join(ln) + " |")


def auto_checks(m: dict) -> list[dict]:
    """Per budget: auto against the fastest and the most accurate single scheme (only when auto rows exist)."""
    out = []
    ok = [r for r in m["rows"] if r["status"] == "ok" and r["host_median_us"] is not None and r["top1"] is not None]
    for b in sorted({r["budget"] for r in ok}):
        auto = next((r for r in ok if r["budget"] == b and r["scheme"] == "auto"), None)
        # a scheme that stopped short of the budget (weight-svd on the ResNet: 0.975 of the MACs) is not at it
        single = [r for r in ok if r["budget"] == b and r["scheme"] != "auto"
                  and r["mac_ratio"] is not None and r["mac_ratio"] <= 1.05 / b]
        if auto is None or not single:
            continue
        fastest = min(single, key=lambda r: r["host_median_us"])
        accurate = max(single, key=lambda r: (r["top1"], -r["host_median_us"]))
        chk = {"budget": b, "auto_us": auto["host_median_us"], "auto_top1": auto["top1"]}
        for tag, r in (("fastest", fastest), ("most_accurate", accurate)):
            chk[tag] = {"scheme": r["scheme"], "us": r["host_median_us"], "top1": r["top1"],
                        "auto_faster": auto["host_median_us"] < r["host_median_us"],
                        "auto_accuracy_equal_or_better": auto["top1"] >= r["top1"]}
        out.append(chk)
        yn = {True: "yes", False: "no"}
        print(f"auto vs best single scheme at {b:g}x: auto {auto['host_median_us']:.1f} µs "
              f"{auto['top1'] * 100:.2f} %; "
              + "; ".join(f"vs {tag.replace('_', ' ')} ({chk[tag]['scheme']} {chk[tag]['us']:.1f} µs "
                          f"{chk[tag]['top1'] * 100:.2f} %): faster? {yn[chk[tag]['auto_faster']]}, accuracy equal "
                          f"or better? {yn[chk[tag]['auto_accuracy_equal_or_better']]}"
                          for tag in ("fastest", "most_accurate")))
    return out


def check_targets(m: dict) -> dict:
    """Issue 8's targets on one model: the fastest int8 variant within 0.5 pt of the float Keras top-1."""
    base = m["baseline"]
    ok = [r for r in m["rows"] if r["status"] == "ok" and r["host_median_us"] is not None and r["top1"] is not None]
    within = [r for r in ok if r["drop_pp"] <= TARGET_MAX_DROP_PP + 1e-9]
    res = {"model": m["name"], "keras_top1": base["keras_top1"], "max_drop_pp": TARGET_MAX_DROP_PP,
           "goals": {"speedup_vs_int8": TARGET_VS_INT8, "speedup_vs_fp32": TARGET_VS_FP32,
                     "a76_instruction_reduction": TARGET_INSTR}}
    print(f"\n## issue 8 targets on {m['name']} (float Keras top-1 {base['keras_top1'] * 100:.2f} %, "
          f"{base['eval_n']} test images)")
    if not within:
        closest = max(ok, key=lambda r: r["top1"]) if ok else None
        res.update(variant=None, met=False, closest=None if closest is None else
                   {"scheme": closest["scheme"], "budget": closest["budget"], "drop_pp": closest["drop_pp"]})
        print(f"accuracy: NOT MET: no int8 variant within {TARGET_MAX_DROP_PP} pt"
              + ("" if closest is None else f"; the closest, {closest['scheme']} at {closest['budget']:g}x, "
                                            f"drops {closest['drop_pp']:.2f} pt"))
        return res
    best = min(within, key=lambda r: r["host_median_us"])
    red = _ratio(base["int8_a76_instructions"], best["a76_instructions"])
    figs = {"speedup_vs_int8": best["speedup_vs_int8"], "speedup_vs_fp32": best["speedup_vs_fp32"],
            "a76_instruction_reduction": red}
    met = {k: v is not None and v >= res["goals"][k] for k, v in figs.items()}
    res.update(variant={"scheme": best["scheme"], "budget": best["budget"], "top1": best["top1"],
                        "drop_pp": best["drop_pp"], "mac_ratio": best["mac_ratio"]}, figures=figs, met_each=met,
               met=all(met.values()))
    print(f"best int8 variant within {TARGET_MAX_DROP_PP} pt: {best['scheme']} at {best['budget']:g}x "
          f"(top-1 {best['top1'] * 100:.2f} %, drop {best['drop_pp']:.2f} pt, MAC ratio {best['mac_ratio']:.3f})")
    for k, label in (("speedup_vs_int8", "host speedup vs int8 baseline"),
                     ("speedup_vs_fp32", "host speedup vs fp32 TFLite"),
                     ("a76_instruction_reduction", "a76 instruction reduction vs int8 baseline")):
        print(f"{label}: {_f(figs[k], '.2f')}x (goal >= {res['goals'][k]:g}x): {'met' if met[k] else 'NOT MET'}")
    return res


# -- plot -------------------------------------------------------------------------------------------------------
def plot_model(m: dict, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from edge_lowrank.fileio import atomic_path

    base = m["baseline"]
    rows = [r for r in m["rows"] if r["status"] == "ok" and r["top1"] is not None]
    if not rows:
        return None
    panels = [("host_median_us", "host median latency (µs, LiteRT + XNNPACK, 1 thread)",
               base["int8_median_us"], base["fp32_median_us"])]
    if any(r["a76_instructions"] for r in rows):
        panels.append(("a76_instructions", "cortex-a76 instructions per inference (QEMU, int8)",
                       base["int8_a76_instructions"], None))
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 5.5), dpi=110, squeeze=False)
    markers = "osD^vP*Xh<>"
    schemes = list(dict.fromkeys(r["scheme"] for r in rows))
    for ax, (key, label, b8, b32) in zip(axes[0], panels):
        for k, s in enumerate(schemes):
            pts = sorted(((r["budget"], r[key], r["top1"] * 100) for r in rows if r["scheme"] == s and r[key]),
                         key=lambda t: t[0])
            if not pts:
                continue
            ax.plot([p[1] for p in pts], [p[2] for p in pts], marker=markers[k % len(markers)], color=f"C{k}",
                    label=s, lw=1.2, ms=7)
            for bud, x, y in pts:
                ax.annotate(f"{bud:g}x", (x, y), fontsize=7, xytext=(4, 3), textcoords="offset points")
        if b8:
            ax.plot([b8], [base["int8_top1"] * 100], "k*", ms=14, label="baseline int8")
        if b32:
            ax.plot([b32], [base["fp32_tflite_top1"] * 100], "kX", ms=10, label="baseline fp32")
        ax.axhline(base["keras_top1"] * 100, color="grey", ls=":", lw=1, label="float Keras top-1")
        ax.axhline((base["keras_top1"] * 100) - TARGET_MAX_DROP_PP, color="grey", ls="--", lw=0.8,
                   label=f"-{TARGET_MAX_DROP_PP} pt")
        ax.set_xlabel(label)
        ax.set_ylabel(f"int8 top-1 (%) on {base['eval_n']} test images")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"{m['name']}: accuracy vs cost, each scheme at budgets "
                 f"{', '.join(f'{b:g}x' for b in sorted({r['budget'] for r in rows}))} fewer MACs")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def main(argv=None) -> int:
    try:
        args = _parse(argv)
        models, schemes, budgets, notes = _resolve(args)
    except ArgError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    from edge_lowrank.fileio import atomic_write_bytes

    for n in notes:
        print(n, flush=True)
    out = Path(args.out)
    json_path = Path(args.json) if args.json else out / "frontier.json"
    t0 = time.monotonic()
    results = {"tool": "benchmarks/bench_frontier.py",
               "settings": {"models": [str(p) for _, p in models], "schemes": schemes, "budgets": budgets,
                            "finetune_epochs": args.finetune_epochs, "finetune_samples": args.finetune_samples or None,
                            "eval_samples": args.eval_samples, "arm": None if args.no_arm else ARM_PROFILE,
                            "bench_secs": args.bench_secs, "seed": args.seed, "out": str(out)},
               "notes": notes, "models": {}, "auto_checks": {}, "targets": None}
    for name, path in models:
        m = frontier_model(name, path, schemes, budgets, args)
        png = plot_model(m, out / f"frontier_{name}.png")
        m["plot"] = None if png is None else str(png)
        results["models"][name] = m
        print_table(m)
        checks = auto_checks(m)
        if checks:
            results["auto_checks"][name] = checks
        if m["plot"]:
            print(f"plot: {m['plot']}")
    if args.targets:
        name = next((n for n, p in models if Path(p).name == "resnet_fmnist.keras"), None)
        if name is None:
            print("\n--targets: the sample ResNet is not among --models; no targets checked")
        else:
            results["targets"] = check_targets(results["models"][name])
    results["wall_s"] = round(time.monotonic() - t0, 1)
    atomic_write_bytes(json_path, (json.dumps(results, indent=1) + "\n").encode())
    print(f"\njson: {json_path}   wall time: {results['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
