"""`edge-lowrank run --schemes auto`: the per-layer choice joins the report like any scheme."""

import contextlib
import io
import json

import pytest

from edge_lowrank.cli.main import main


@pytest.mark.slow
def test_auto_variant_on_a_latency_budget(tiny, fast_flags, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_LOWRANK_CACHE", str(tmp_path / "cache"))
    model, npz = tiny
    out = tmp_path / "out"
    so, se = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(so), contextlib.redirect_stderr(se):
        rc = main(["run", str(model), "--data", str(npz), "--out", str(out), "--schemes", "auto",
                   "--target-latency-ratio", "0.7", "--max-accuracy-drop", "100", *fast_flags])
    assert rc == 0, se.getvalue()
    report = json.loads((out / "report.json").read_text())
    text = json.dumps(report)
    assert '"auto"' in text and "auto-int8" in text
    assert list((out / "tflite").glob("auto-int8.tflite"))


def test_auto_budgets_are_checked(tiny, tmp_path):
    model, npz = tiny
    se = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(se):
        rc = main(["run", str(model), "--data", str(npz), "--out", str(tmp_path / "o"), "--schemes", "auto",
                   "--target-latency-ratio", "1.5", "--no-progress"])
    assert rc == 1 and "target_latency_ratio" in se.getvalue() and "Traceback" not in se.getvalue()
