"""`report.json` (versioned schema, `report.schema.json` beside this file) and `report.md` (one table).

Why a schema: CI scripts and dashboards read report.json; the schema is the contract they can validate
against, and `schema_version` tells them when it changes. The markdown table is what a person reads in a
pull request or the terminal; it is rendered from report.json alone, so both always agree.
"""

from __future__ import annotations

import json
from importlib import resources

SCHEMA_VERSION = "1.2"  # 1.1: data.mode/metric/split/input_transform/notes, data parts; 1.2: selection
TIMING_KEYS = ("timings", "host", "host_median_us", "speedup_vs_float32", "speedup_vs_int8",
               "speedup_ci95_vs_float32", "speedup_gate", "created", "seconds")


def load_schema() -> dict:
    return json.loads(resources.files("edge_lowrank.pipeline").joinpath("report.schema.json").read_text())


def validate(report: dict) -> None:
    """Validate against the schema when `jsonschema` is installed (it is in the dev extra); raise ValueError."""
    try:
        import jsonschema
    except ImportError:  # pragma: no cover - runtime without the dev extra
        return
    try:
        jsonschema.validate(report, load_schema())
    except jsonschema.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "(top)"
        raise ValueError(f"report.json does not match its schema at {where}: {e.message[:200]}") from None


def _fmt_int(n) -> str:
    if n is None:
        return "-"
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


def _fmt(v, spec, suffix="") -> str:
    return "-" if v is None else f"{v:{spec}}{suffix}"


def agreement_mode(report: dict) -> bool:
    """Unlabelled test data: every `top1` is top-1 agreement with the original float model."""
    return report["data"].get("mode") == "agreement"


def accuracy_heading(report: dict) -> str:
    return "Agreement w/ float model %" if agreement_mode(report) else "Top-1 %"


def data_sentence(report: dict) -> str:
    """What the accuracy column measures, on which images, and the data notes (split, transform), in prose."""
    d = report["data"]
    t = d["test"]
    where = f"{t['spec']}" + (f", {t['part']}" if t.get("part") else "")
    what = ("Top-1 agreement with the original float Keras model (the test data have no labels)"
            if agreement_mode(report) else "Top-1")
    s = f"{what} on {where} ({t['n']:,} images)."
    if d.get("train"):
        tr = d["train"]
        s += f" Fine-tuned on {tr['spec']}{', ' + tr['part'] if tr.get('part') else ''} ({tr['n']:,} images)."
    c = d["calib"]
    s += f" int8 calibration: {c['spec']}{', ' + c['part'] if c.get('part') else ''} ({c['n']:,} images)."
    tr = d.get("input_transform") or {}
    if tr.get("description"):
        s += f" Input transform: {tr['description']}."
    return s


def selection_sentence(report: dict) -> str:
    """Which figure chose best.tflite (and what --min-speedup compared), and why that one."""
    sel = report["selection"]
    s = f"best.tflite chosen on {sel['figure']} ({sel['reason']}); --min-speedup compares the same figure"
    if sel["not_measured"]:
        s += f"; not measured on {sel['on']}, so not candidates: {', '.join(sel['not_measured'])}"
    return s + "."


def table_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the summary table (also printed to the terminal)."""
    profiles = report["arm"]["profiles"]
    head = ["Variant", "Scheme", "Params", "MACs", "Size KB", "Host ms", "vs fp32", "vs int8"]
    for p in profiles:
        head += [f"ARM instr ({p})", "ratio"]
    head += [accuracy_heading(report), "Δ pp", "Fidelity agree / max abs err"]
    rows = []
    best = (report.get("best") or {}).get("id")
    for v in report["variants"]:
        fid = v.get("fidelity") or {}
        agree = fid.get("top1_agreement")
        err = fid.get("max_abs_err")
        name = v["id"] + (" (best)" if v["id"] == best else "")
        row = [name, v["scheme"], _fmt_int(v["params"]), _fmt_int(v["macs"]), _fmt(None if v["size_bytes"] is None else v["size_bytes"] / 1024, ".1f"),
               _fmt(None if v["host_median_us"] is None else v["host_median_us"] / 1000, ".3f"),
               _fmt(v["speedup_vs_float32"], ".2f", "x"), _fmt(v["speedup_vs_int8"], ".2f", "x")]
        for p in profiles:
            a = v["arm"].get(p) or {}
            row += [_fmt_int(a.get("instructions")), _fmt(a.get("ratio"), ".2f", "x")]
        row += [_fmt(None if v["top1"] is None else v["top1"] * 100, ".2f"),
                _fmt(v["top1_delta_pp"], "+.2f"),
                "-" if agree is None else f"{agree * 100:.1f}% / {err:.3g}" if err is not None else f"{agree:.3f}"]
        if v.get("error"):
            row[-1] = f"error: {v['error'][:60]}"
        rows.append(row)
    return head, rows


def render_markdown(report: dict) -> str:
    m = report["model"]
    head, rows = table_rows(report)
    lines = [f"# edge-lowrank report: {m['path']}", "",
             f"{m['params']:,} parameters, {m['macs'] / 1e6:.2f} M MACs per image. "
             f"{data_sentence(report)} "
             f"Host latency: LiteRT + XNNPACK, 1 thread, variants interleaved; speedups are ratios of medians "
             f"against the float32 and int8 baselines. ARM: instructions per inference under QEMU "
             f"(emulated, deterministic), ratio against the baseline of the same precision.", "",
             "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines.append("")
    for note in report["data"].get("notes") or []:
        lines.append(f"- Data: {note}.")
    arm = report["arm"]
    if not arm["available"]:
        lines.append(f"ARM: not measured ({arm['reason']}).")
    for s in report["schemes"]:
        if s["status"] != "ok":
            lines.append(f"- {s['scheme']}: {s['status']}: {s['message']}")
    g = report["gates"]
    lines += ["", f"Gates: {', '.join(f'{k}={v:g}' for k, v in g['gates'].items()) or 'none'}. {g['message']}.",
              "", selection_sentence(report)]
    if report.get("best"):
        lines.append(f"Best variant written to `{report['best']['tflite']}`.")
    return "\n".join(lines) + "\n"


def comparable(report: dict) -> dict:
    """The report without timing-dependent fields, to compare two runs of the same inputs."""

    def strip(o):
        if isinstance(o, dict):
            return {k: strip(v) for k, v in o.items() if k not in TIMING_KEYS}
        if isinstance(o, list):
            return [strip(v) for v in o]
        return o

    r = strip(report)
    r.get("settings", {}).pop("out", None)
    r.pop("gates", None)  # the speed gate and the best pick depend on timings
    r.pop("best", None)
    return r
