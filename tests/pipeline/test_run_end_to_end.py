"""`edge-lowrank run` end to end on a tiny CNN and 320 real Fashion-MNIST images: report, plots, HTML, gates."""

import contextlib
import io
import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from edge_lowrank.cli.main import main


def run_main(*args):
    so, se = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(so), contextlib.redirect_stderr(se):
        rc = main(["run", *map(str, args)])
    return rc, so.getvalue(), se.getvalue()


def test_run_succeeds_and_reports_every_variant(full_run):
    out, rc, stdout, stderr = full_run
    assert rc == 0, stderr
    report = json.loads((out / "report.json").read_text())
    ids = [v["id"] for v in report["variants"]]
    assert ids == ["baseline-float32", "baseline-int8", "channel-float32", "channel-int8",
                   "spatial-float32", "spatial-int8"]
    base = report["variants"][0]
    assert base["speedup_vs_float32"] == 1.0 and base["top1_delta_pp"] == 0.0
    for v in report["variants"]:
        assert v["error"] is None, v
        assert 0.0 <= v["top1"] <= 1.0 and v["host_median_us"] > 0
        assert (out / v["files"]["tflite"]).stat().st_size == v["size_bytes"]
        assert (out / v["files"]["c_source"]).read_text().count("0x") > 100
        assert v["fidelity"]["top1_agreement"] > 0.5
    for s in ("channel", "spatial"):
        row = next(r for r in report["schemes"] if r["scheme"] == s)
        assert row["status"] == "ok", row
        v = next(v for v in report["variants"] if v["id"] == f"{s}-float32")
        assert v["macs"] < base["macs"], "the default budget halves the MACs of rewritten layers"
    # one .npz alone is split per class: 20 % held out for the figures, the rest fine-tunes and calibrates
    data = report["data"]
    assert data["mode"] == "top1" and data["split"]["n_total"] == 320
    n_test, n_train = data["test"]["n"], data["train"]["n"]
    assert n_test + n_train == 320 and abs(n_test - 64) <= 5 and data["calib"]["n"] == 64  # rounding per class
    assert (data["split"]["n_test"], data["split"]["n_finetune_calib"]) == (n_test, n_train)
    assert data["test"]["part"] == "held-out test part" and data["train"]["part"] == "fine-tuning part"
    assert f"{n_test} held out for testing" in stdout and f"{n_train} images for fine-tuning" in stdout
    # the best variant is written with its C array, and it is one of the variants, byte for byte
    best = report["best"]
    assert best is not None
    chosen = next(v for v in report["variants"] if v["id"] == best["id"])
    assert (out / "best.tflite").read_bytes() == (out / chosen["files"]["tflite"]).read_bytes()
    assert "g_best_model" in (out / "best.h").read_text()
    # the table is printed, and report.md holds the same rows
    assert "baseline-int8" in stdout and "spatial-int8" in stdout
    md = (out / "report.md").read_text()
    assert md.count("\n| ") == 1 + len(ids)
    assert "ran in" in stderr


def test_report_json_validates_against_its_schema(full_run):
    import jsonschema

    from edge_lowrank.pipeline.report import load_schema

    out = full_run[0]
    report = json.loads((out / "report.json").read_text())
    jsonschema.validate(report, load_schema())
    broken = dict(report, variants=[{**report["variants"][0], "precision": "int4"}])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, load_schema())


@pytest.mark.parametrize("name", ["pareto.png", "layers.png"])
def test_plots_are_png_with_content(full_run, name):
    import matplotlib.image

    path = full_run[0] / name
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = matplotlib.image.imread(path)
    assert img.shape[0] > 300 and img.shape[1] > 500
    # not a blank canvas: many distinct colours (markers, bars, text)
    rgb = (img[..., :3] * 255).astype(np.uint32)
    assert len(np.unique(rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2])) > 50


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs = []

    def handle_starttag(self, tag, attrs):
        self.refs += [v for k, v in attrs if k in ("href", "src")]


def test_html_references_files_that_exist(full_run):
    out = full_run[0]
    parser = _Refs()
    parser.feed((out / "report.html").read_text())
    assert any(r.endswith("pareto.png") for r in parser.refs) and any(r.endswith(".tflite") for r in parser.refs)
    for ref in parser.refs:
        assert not re.match(r"^[a-z]+://|^/", ref), f"{ref} is not relative to the folder"
        assert (out / ref).is_file(), ref


def test_rerun_reuses_every_stage_and_gates_pick_exit_codes(fast_flags, full_run, tmp_path):
    out = full_run[0]
    model = json.loads((out / "report.json").read_text())["model"]["path"]
    npz = json.loads((out / "report.json").read_text())["data"]["test"]["spec"]
    records = {p: p.stat().st_mtime_ns for p in (out / ".stages").glob("*.json")}
    common = [model, "--data", npz, "--out", out, "--schemes", "channel,spatial", *fast_flags]

    # an impossible speedup: exit 3, one line naming the gate and the shortfall, no stale best.tflite
    rc, stdout, stderr = run_main(*common, "--min-speedup", "1000")
    assert rc == 3
    last = stderr.strip().splitlines()[-1]
    assert re.search(r"--min-speedup 1000 by [0-9.]+ x \(reaches [0-9.]+ x\)", last), last
    assert stderr.count("cached (skipped)") == len(records) and "ran in" not in stderr
    assert {p: p.stat().st_mtime_ns for p in records} == records
    assert not (out / "best.tflite").exists()
    report = json.loads((out / "report.json").read_text())
    assert report["gates"]["passed"] is False and report["best"] is None

    # the size gate chooses: the smallest file passes a limit just above its size, and is written as best
    sizes = {v["id"]: v["size_bytes"] for v in report["variants"]}
    smallest = min(sizes, key=sizes.get)
    limit_kb = sizes[smallest] / 1024 + 0.01
    rc, _, stderr = run_main(*common, "--max-size-kb", f"{limit_kb:.3f}")
    assert rc == 0, stderr
    report = json.loads((out / "report.json").read_text())
    passing = [v for v in report["variants"] if v["size_bytes"] / 1024 <= limit_kb]
    assert report["best"]["id"] in {v["id"] for v in passing}
    assert (out / "best.tflite").stat().st_size <= limit_kb * 1024

    # the same gate from a TOML config; a flag given on the command line wins over the file
    cfg = tmp_path / "ci.toml"
    cfg.write_text('[run]\nmax-size-kb = 0.5\nmax_accuracy_drop = 50.0\n')
    rc, _, stderr = run_main(*common, "--config", cfg)
    assert rc == 3 and "--max-size-kb 0.5 by" in stderr.strip().splitlines()[-1]
    rc, _, stderr = run_main(*common, "--config", cfg, "--max-size-kb", "100000")
    assert rc == 0, stderr
