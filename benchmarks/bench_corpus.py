"""The conformance corpus in one table: MAC counts, every scheme at a MAC budget, int8 status, time per model.

    python benchmarks/bench_corpus.py                                   # the whole corpus, every scheme
    python benchmarks/bench_corpus.py --models mlp,unet --schemes channel,output --no-bench
    python benchmarks/bench_corpus.py --json runs/corpus.json --markdown

The models are `tests/corpus/models.py`'s (keras.applications at 32-72 px with seeded random weights, and
hand-built graph shapes: reloaded Sequentials, nesting, sharing, Conv1D, U-Net, several inputs/outputs, a
(None, None) input). Per model, in its own child process (a native crash or a hang costs one row, and memory
is returned between models):

- graph MACs (`edge_lowrank.profile`) and MACs recounted from the float32 .tflite (`converters.tflite_macs`);
- per scheme, the whole-model MAC ratio `compress` reaches at `--ratio` (random calibration images for
  `output`; CP's ALS bounded to `--cp-seconds` per layer), or why it cannot be met (the report's note);
- the int8 export of the original model: builtin ops only, XNNPACK partitions, and (unless `--no-bench`) its
  host latency from `device_bench` (one thread, a few runs: a smoke check, not a latency figure);
- seconds for the whole row.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import argparse  # noqa: E402
import collections  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SCHEMES = ("spatial", "channel", "tucker2", "weight-svd", "output", "cp", "tucker2-spatial")
BAND = (0.45, 0.55)  # a 0.5 budget "met" (issue 12); scaled with --ratio
CALIB = 32


def load_corpus():
    name = "edge_lowrank_corpus_models"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "corpus" / "models.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


# ------------------------------------------------------------------------------------------- one model


def _short(e: BaseException) -> str:
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}"


def measure(name: str, schemes, ratio: float, cp_seconds: float, bench: bool) -> dict:
    """Every figure of one corpus model's row (runs in the child)."""
    import warnings

    from converters import audit_ops, tflite_macs, to_tflite
    from edge_lowrank.profile import profile_model
    from edge_lowrank.rewrite import CompressionPolicy, compress

    C = load_corpus()
    t0 = time.monotonic()
    model = C.build(name)
    row = {"model": name, "graph_macs": profile_model(model).macs, "schemes": {}}
    try:
        row["tflite_macs"] = tflite_macs(to_tflite(model, precision="float32")).total
    except Exception as e:  # noqa: BLE001 - one cell, not the row
        row["tflite_error"] = _short(e)
    calib = C.inputs(model, CALIB, seed=1)
    for scheme in schemes:
        t = time.monotonic()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _, rep = compress(model, CompressionPolicy(
                    scheme, target_mac_ratio=ratio, calib_data=calib if scheme == "output" else None,
                    cp_time_budget_s=cp_seconds))
            row["schemes"][scheme] = {"ratio": rep.macs_after / rep.macs_before, "notes": list(rep.notes),
                                      "factorized": sum(d.action == "factorized" for d in rep.layers),
                                      "seconds": time.monotonic() - t}
        except Exception as e:  # noqa: BLE001
            row["schemes"][scheme] = {"error": _short(e), "seconds": time.monotonic() - t}
    int8 = {}
    try:
        flat = to_tflite(model, precision="int8", representative_data=C.inputs(model, 16, seed=2))
        audit = audit_ops(flat)
        int8 = {"builtin_only": audit.builtin_only, "partitions": audit.xnnpack_partitions,
                "outside": list(audit.undelegated_ops or ()), "kb": len(flat) / 1024}
        if bench:
            from device_bench import bench_models
            from device_bench.results import BenchParams

            with tempfile.TemporaryDirectory() as d:
                path = Path(d) / f"{name}.tflite"
                path.write_bytes(flat)
                (res,) = bench_models([path], BenchParams(num_runs=5, min_secs=0.0, warmup_min_secs=0.0, rounds=1),
                                      interleave=False)
            int8["bench"] = res.error or round(res.inference_us.median / 1000, 3)
    except Exception as e:  # noqa: BLE001
        int8 = {"error": _short(e)}
    row["int8"] = int8
    row["seconds"] = time.monotonic() - t0
    return row


def _child_main(argv) -> int:
    name, out = argv[0], argv[1]
    spec = json.loads(argv[2])
    row = measure(name, spec["schemes"], spec["ratio"], spec["cp_seconds"], spec["bench"])
    Path(out).write_text(json.dumps(row))
    return 0


def run_one(name: str, schemes, ratio, cp_seconds, bench, timeout_s) -> dict:
    """One model's row from a child process; a crash or timeout becomes the row's error."""
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "row.json"
        spec = json.dumps({"schemes": list(schemes), "ratio": ratio, "cp_seconds": cp_seconds, "bench": bench})
        try:
            proc = subprocess.run([sys.executable, __file__, "--child", name, str(out), spec],
                                  capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return {"model": name, "error": f"timed out after {timeout_s:.0f} s", "seconds": timeout_s}
        if proc.returncode != 0 or not out.exists():
            tail = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1][:200]
            return {"model": name, "error": f"child exited {proc.returncode}: {tail}",
                    "seconds": time.monotonic() - t0}
        return json.loads(out.read_text())


# ------------------------------------------------------------------------------------------- table


def _m(n) -> str:
    return "-" if n is None else f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


def _scheme_cell(cell, ratio) -> str:
    if cell is None:
        return ""
    if "error" in cell:
        return "error"
    lo, hi = BAND[0] * ratio / 0.5, BAND[1] * ratio / 0.5
    mark = "" if lo <= cell["ratio"] <= hi else " *"
    return f"{cell['ratio']:.3f}{mark}"


def _int8_cell(d) -> str:
    if not d:
        return "-"
    if "error" in d:
        return "error"
    s = ("builtin" if d["builtin_only"] else "NON-BUILTIN") + f", {d['partitions']} part."
    if "bench" in d:
        s += f", {d['bench']} ms" if isinstance(d["bench"], (int, float)) else ", bench error"
    return s


def render(rows, schemes, ratio, markdown: bool = False) -> str:
    head = ["model", "graph MACs", ".tflite MACs", "diff"] + list(schemes) + ["int8 (original)", "s"]
    body, notes = [], []
    for r in rows:
        if "error" in r and "graph_macs" not in r:
            body.append([r["model"], "error"] + [""] * (len(head) - 3) + [f"{r['seconds']:.0f}"])
            notes.append(f"{r['model']}: {r['error']}")
            continue
        g, t = r["graph_macs"], r.get("tflite_macs")
        diff = "-" if t is None else f"{abs(g - t) / g:.2%}" if g else "0"
        cells = [_scheme_cell(r["schemes"].get(s), ratio) for s in schemes]
        body.append([r["model"], _m(g), _m(t) if t is not None else "error", diff] + cells
                    + [_int8_cell(r.get("int8")), f"{r['seconds']:.0f}"])
        if "tflite_error" in r:
            notes.append(f"{r['model']} float32 export: {r['tflite_error']}")
        for s in schemes:
            c = r["schemes"].get(s) or {}
            if "error" in c:
                notes.append(f"{r['model']} / {s}: {c['error']}")
            elif "*" in _scheme_cell(c, ratio):
                notes.append(f"{r['model']} / {s}: " + (" ".join(c["notes"]) or "no note"))
        if "error" in (r.get("int8") or {}):
            notes.append(f"{r['model']} int8: {r['int8']['error']}")
        elif r.get("int8", {}).get("outside"):
            counts = collections.Counter(r["int8"]["outside"])
            notes.append(f"{r['model']} int8: outside XNNPACK: "
                         + ", ".join(f"{op}{f' x{n}' if n > 1 else ''}" for op, n in counts.items()))
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(row) + " |" for row in body]
    else:
        widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
        fmt = lambda row: "  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip()  # noqa: E731
        lines = [fmt(head), fmt(["-" * w for w in widths])] + [fmt(row) for row in body]
    lines.append("")
    lines.append(f"MAC ratio each scheme reached at a {ratio} budget; * outside {BAND[0] * ratio / 0.5:.3f}-"
                 f"{BAND[1] * ratio / 0.5:.3f}, with the reason below.")
    lines += [f"- {n}" if markdown else f"  {n}" for n in notes]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--child"]:
        return _child_main(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=None, help="comma-separated corpus names (default: all)")
    ap.add_argument("--schemes", default=",".join(SCHEMES), help="comma-separated schemes (default: all seven)")
    ap.add_argument("--ratio", type=float, default=0.5, help="the MAC budget (default 0.5)")
    ap.add_argument("--cp-seconds", type=float, default=5.0, help="ALS seconds per layer for cp (default 5)")
    ap.add_argument("--no-bench", action="store_true", help="skip timing the int8 export with device_bench")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per model before its row is an error")
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    corpus = load_corpus().CORPUS
    models = list(corpus) if args.models is None else [m.strip() for m in args.models.split(",") if m.strip()]
    schemes = [s.strip() for s in args.schemes.split(",") if s.strip()]
    bad = [m for m in models if m not in corpus] + [s for s in schemes if s not in SCHEMES]
    if bad or not models or not 0 < args.ratio <= 1:
        what = ", ".join(bad) if bad else f"ratio {args.ratio}" if models else "no model"
        print(f"bench_corpus.py: error: unknown model, scheme or value: {what} (models: {', '.join(corpus)})",
              file=sys.stderr)
        return 2
    from edge_lowrank.fileio import atomic_write_text

    rows = []
    for name in models:
        row = run_one(name, schemes, args.ratio, args.cp_seconds, not args.no_bench, args.timeout)
        rows.append(row)
        print(f"{name}: {row['seconds']:.0f} s{' (' + row['error'] + ')' if 'error' in row else ''}",
              file=sys.stderr, flush=True)
        if args.json:  # after every row: the whole matrix takes most of an hour
            atomic_write_text(args.json, json.dumps({"ratio": args.ratio, "schemes": schemes, "rows": rows},
                                                    indent=1))
    print(render(rows, schemes, args.ratio, args.markdown))
    if args.json:
        print(f"wrote {args.json}")
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
