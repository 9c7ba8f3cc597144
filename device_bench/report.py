"""Render BenchResults as JSON (versioned schema), CSV and a Markdown table; write files atomically.

One renderer for every target, so host, TFLM, QEMU and board rows line up in the same table. The JSON document
is checked against `results.schema.json` (shipped beside this module) by the tests; bump `SCHEMA_VERSION` in
`results.py` when a field changes meaning.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import os
import tempfile
from pathlib import Path

from . import __version__
from .errors import BenchError
from .results import SCHEMA_VERSION, BenchResult

SCHEMA_NAME = "device_bench.results"
SCHEMA_PATH = Path(__file__).with_name("results.schema.json")

CSV_COLUMNS = [
    "model", "target", "xnnpack", "threads", "emulated", "model_size_mb", "init_us", "first_inference_us",
    "warmup_mean_us", "count", "min_us", "max_us", "mean_us", "std_us", "p5_us", "median_us", "p95_us",
    "rss_after_init_mb", "peak_rss_mb", "delegate_partitions", "nodes_outside_delegate", "arena_bytes",
    "instructions_per_inference", "accuracy", "speedup", "ci_low", "ci_high", "cpu", "runtime", "error",
]


def document(results: list[BenchResult], comparison: list[dict] | None = None) -> dict:
    """The JSON document: schema name and version, when and with what it was made, results, comparison."""
    return {
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "generated_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tool": {"name": "device_bench", "version": __version__},
        "results": [r.to_dict() for r in results],
        "comparison": comparison,
    }


def to_json(results: list[BenchResult], comparison: list[dict] | None = None) -> str:
    return json.dumps(document(results, comparison), indent=1, allow_nan=False) + "\n"


def from_json(text: str) -> tuple[list[BenchResult], list[dict] | None]:
    """Read a document back (e.g. from a board), refusing other schemas or major versions."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise BenchError(f"Not a device_bench JSON document ({e}).") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA_NAME:
        raise BenchError(f"Not a device_bench JSON document (schema {doc.get('schema') if isinstance(doc, dict) else None!r}).")
    if str(doc.get("schema_version", "")).split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        raise BenchError(f"device_bench JSON schema_version {doc.get('schema_version')} is not compatible with "
                         f"{SCHEMA_VERSION}.")
    return [BenchResult.from_dict(r) for r in doc["results"]], doc.get("comparison")


def _row(r: BenchResult, cmp_row: dict | None) -> dict:
    s = r.inference_us
    env = r.env or {}
    row = {
        "model": r.label, "target": r.target, "xnnpack": (r.params or {}).get("xnnpack"),
        "threads": (r.params or {}).get("num_threads"), "emulated": r.emulated,
        "model_size_mb": r.model_size_mb, "init_us": r.init_us, "first_inference_us": r.first_inference_us,
        "warmup_mean_us": r.warmup_mean_us,
        "rss_after_init_mb": r.rss_after_init_mb, "peak_rss_mb": r.peak_rss_mb,
        "delegate_partitions": r.delegate_partitions, "nodes_outside_delegate": r.nodes_outside_delegate,
        "arena_bytes": r.arena_bytes, "instructions_per_inference": r.instructions_per_inference,
        "accuracy": r.accuracy, "cpu": env.get("cpu"), "runtime": env.get("runtime"), "error": r.error,
    }
    for key in ("count", "min", "max", "mean", "std", "p5", "median", "p95"):
        row[key if key == "count" else f"{key}_us"] = getattr(s, key) if s else None
    for key in ("speedup", "ci_low", "ci_high"):
        row[key] = cmp_row.get(key) if cmp_row else None
    return row


def to_csv(results: list[BenchResult], comparison: list[dict] | None = None) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for i, r in enumerate(results):
        row = _row(r, comparison[i] if comparison else None)
        w.writerow({k: ("" if row[k] is None else row[k]) for k in CSV_COLUMNS})
    return buf.getvalue()


def _fmt(v, digits=1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return str(v)


def to_markdown(results: list[BenchResult], comparison: list[dict] | None = None) -> str:
    """A Markdown table: latency (median, p5-p95), init, memory, delegation, accuracy, speedup; then errors."""
    head = ["model", "target", "size MB", "init ms", "first ms", "median us", "p5-p95 us", "runs",
            "peak RSS MB", "XNNPACK parts / outside", "arena KB", "accuracy", "speedup (95% CI)"]
    with_instr = any(r.instructions_per_inference for r in results)
    if with_instr:
        head.insert(8, "instr/inference")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    errors = []
    for i, r in enumerate(results):
        s = r.inference_us
        c = comparison[i] if comparison else None
        speed = "-"
        if c and c.get("speedup") is not None:
            speed = f"{c['speedup']:.2f}x ({c['ci_low']:.2f}-{c['ci_high']:.2f})"
        name = os.path.basename(r.model) + (r.label[len(r.model):] if r.label.startswith(r.model) else "")
        if r.error:
            errors.append(f"- `{name}`: {r.error}")
        cells = [
            f"`{name}`", r.target + (" (emulated)" if r.emulated else ""), _fmt(r.model_size_mb, 3),
            _fmt(r.init_us / 1e3 if r.init_us is not None else None, 1),
            _fmt(r.first_inference_us / 1e3 if r.first_inference_us is not None else None, 2),
            _fmt(s.median if s else None), f"{s.p5:,.1f}-{s.p95:,.1f}" if s else "-", _fmt(s.count if s else None),
            _fmt(r.peak_rss_mb), "-" if r.delegate_partitions is None else
            f"{r.delegate_partitions} / {r.nodes_outside_delegate}",
            _fmt(r.arena_bytes / 1024 if r.arena_bytes else None, 1),
            f"{r.accuracy:.4f}" if r.accuracy is not None else "-", "error" if r.error else speed,
        ]
        if with_instr:
            cells.insert(8, f"{r.instructions_per_inference:,}" if r.instructions_per_inference else "-")
        lines.append("| " + " | ".join(cells) + " |")
    envs = {(r.env or {}).get("cpu"): r.env for r in results if r.env}
    out = "\n".join(lines) + "\n"
    for env in envs.values():
        out += (f"\nEnvironment: {env.get('cpu')}, {env.get('machine')}, {env.get('runtime')}, "
                f"{env.get('threads')} thread(s), {'emulated' if env.get('emulated') else 'native'}.\n")
    if errors:
        out += "\nErrors:\n" + "\n".join(errors) + "\n"
    return out


def write_text(path, text: str) -> Path:
    """Write atomically: a temporary file in the same folder renamed onto `path` (no half-written output)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise BenchError(f"Cannot write {path}: {e.strerror or e}.") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
