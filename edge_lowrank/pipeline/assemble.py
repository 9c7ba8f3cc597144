"""Turn the stage records into the report, apply the gates, and write every summary file of the folder.

Why separate from the stages: this part is cheap and always rerun, from records only, so the report, plots,
HTML and `best.tflite` of a folder always describe one consistent run, resumed or not.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

from edge_lowrank import __version__
from edge_lowrank.fileio import atomic_path, atomic_write_text
from edge_lowrank.pipeline import gates as gates_mod
from edge_lowrank.pipeline import report as report_mod

BEST_FILES = ("best.tflite", "best.cc", "best.h")


def _median(bench: dict | None):
    if not bench or bench.get("error") or not bench.get("inference_us"):
        return None
    return bench["inference_us"].get("median")


def _ratio(num, den):
    return None if num is None or den is None or den == 0 else round(num / den, 4)


def build_variants(pipe, base, scheme_rows, exports, bench, arm) -> list[dict]:
    by_scheme = {r["scheme"]: r for r in scheme_rows}
    ref_top1 = exports["baseline-float32"].get("top1")
    med = {v: _median(bench.get(v)) for v in exports}
    variants = []
    for vid, e in exports.items():
        scheme, prec = e["scheme"], e["precision"]
        src = base if scheme == "baseline" else by_scheme[scheme]
        b = bench.get(vid) or {}
        arm_rows = {}
        for p in pipe.arm_state["profiles"]:
            a = arm.get((p, vid)) or {}
            ref = (arm.get((p, f"baseline-{prec}")) or {}).get("instructions")
            arm_rows[p] = {"instructions": a.get("instructions"), "ratio": _ratio(a.get("instructions"), ref),
                           "error": a.get("error")}
        top1 = e.get("top1")
        delta = None if top1 is None or ref_top1 is None else round((top1 - ref_top1) * 100, 4)
        s32 = _ratio(med["baseline-float32"], med[vid])
        s8 = _ratio(med["baseline-int8"], med[vid])
        variants.append({
            "id": vid, "scheme": scheme, "precision": prec,
            "files": {k: e[k] for k in ("keras", "tflite", "c_source", "c_header") if e.get(k)},
            "params": src["params"], "macs": src["macs"], "size_bytes": e.get("size_bytes"),
            "arena_bytes": e.get("arena_bytes"), "top1": top1, "top1_keras": e.get("top1_keras"),
            "top1_delta_pp": delta, "accuracy_drop_pp": None if delta is None else -delta,
            "host_median_us": med[vid], "host": b.get("inference_us"),
            "speedup_vs_float32": s32, "speedup_vs_int8": s8,
            "speedup_ci95_vs_float32": b.get("speedup_ci95_vs_float32"),
            "speedup_gate": s32 if pipe.cfg.speedup_vs == "float32" else s8,
            "arm": arm_rows, "fidelity": e.get("fidelity"),
            "error": e.get("error") or b.get("error"),
        })
    return variants


def measured_on(bench: dict, arm: dict) -> dict:
    """Which machine (host name, Ray node) timed or counted what: a farm's figures are only comparable per node."""
    where = {"bench:host": bench.get("_measured_on")}
    where.update({f"arm:{p}:{v}": r.get("measured_on") for (p, v), r in arm.items()})
    return {k: v for k, v in where.items() if v}


def data_section(inp) -> dict:
    """report.json's `data`: what each part is, how many images, the split, the metric, the input transform."""
    di = inp.data_info

    def ref(role, ds):
        spec, part = di["specs"][role]
        return None if ds is None else {"spec": spec, "part": part, "n": len(ds)}

    return {"mode": di["mode"], "metric": di["metric"], "split": di["split"],
            "input_transform": di["input_transform"], "notes": list(di["notes"]),
            "test": ref("test", inp.test), "train": ref("train", inp.train), "calib": ref("calib", inp.calib)}


def assemble(pipe, base, scheme_rows, exports, bench, arm) -> dict:
    """Build report.json's dict, write best.tflite (or remove a stale one), the plots, md, json and html."""
    from edge_lowrank.pipeline.html import render_html
    from edge_lowrank.pipeline.plots import plot_layers, plot_pareto

    cfg, inp, out = pipe.cfg, pipe.inp, pipe.out
    variants = build_variants(pipe, base, scheme_rows, exports, bench, arm)
    selection = gates_mod.resolve_selection(cfg.select_target(), pipe.arm_state, variants)
    ref = next((v for v in variants if v["id"] == f"baseline-{cfg.speedup_vs}"), None)
    for v in variants:  # the speed gate compares on the figure that picks best.tflite
        v["speedup_gate"] = gates_mod.speedup_on(selection, v, ref)
    outcome = gates_mod.evaluate(variants, cfg.gates(), accuracy=inp.data_info["mode"], selection=selection)
    files = {"report_json": "report.json", "report_md": "report.md", "report_html": "report.html"}
    best = None
    if outcome.passed:
        import converters

        v = next(v for v in variants if v["id"] == outcome.best)
        tfl = (out / v["files"]["tflite"]).read_bytes()
        with atomic_path(out / "best.tflite", suffix=".tflite") as tmp:
            shutil.copyfile(out / v["files"]["tflite"], tmp)
        src, hdr = converters.c_array(tfl, "g_best_model")
        atomic_write_text(out / "best.cc", src)
        atomic_write_text(out / "best.h", hdr)
        best = {"id": v["id"], "tflite": "best.tflite", "c_source": "best.cc", "c_header": "best.h",
                "size_bytes": v["size_bytes"], "top1": v["top1"], "speedup_vs_float32": v["speedup_vs_float32"],
                "select_on": selection.on, "figure": selection.figure, "value": selection.value(v)}
        files.update(best_tflite="best.tflite", best_c_source="best.cc", best_c_header="best.h")
    else:
        for name in BEST_FILES:  # never leave the best of an earlier run for a CI job to pick up
            (out / name).unlink(missing_ok=True)
    # where the stages ran is not a setting of the results: both executors write the same report (timings apart)
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("progress", "executor", "ray_address")}
    settings["model"] = str(inp.model_path)
    report = {
        "schema_version": report_mod.SCHEMA_VERSION,
        "tool": {"name": "edge-lowrank", "version": __version__},
        "model": {"path": str(inp.model_path), "sha256": inp.model_sha, "params": base["params"],
                  "macs": base["macs"], "input_shape": list(inp.model.inputs[0].shape[1:])},
        "data": data_section(inp),
        "settings": settings,
        "schemes": [{k: r.get(k) for k in ("scheme", "status", "message", "rewrite", "finetune")}
                    for r in scheme_rows],
        "variants": variants,
        "arm": dict(pipe.arm_state),
        "selection": {**selection.to_dict(), "speedup_vs": cfg.speedup_vs,
                      "not_measured": list(outcome.not_measured)},
        "gates": outcome.to_dict(),
        "best": best,
        "files": files,
        "timings": {"stages_run_now_s": dict(pipe.timings), "executor": pipe.executor.describe(),
                    "measured_on": measured_on(bench, arm)},
    }
    for key, name, fn in (("pareto_png", "pareto.png", plot_pareto), ("layers_png", "layers.png", plot_layers)):
        if fn(report, out / name) is not None:
            files[key] = name
        else:
            (out / name).unlink(missing_ok=True)
    report_mod.validate(report)
    atomic_write_text(out / "report.json", json.dumps(report, indent=1) + "\n")
    atomic_write_text(out / "report.md", report_mod.render_markdown(report))
    atomic_write_text(out / "report.html", render_html(report))
    report["_outcome"] = outcome
    return report
