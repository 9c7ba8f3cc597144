"""The ARM columns of `run`: instructions per inference under QEMU for the int8 variants (needs `setup-arm`)."""

import contextlib
import io
import json
import shutil

import pytest

from edge_lowrank.cli.main import main


@pytest.mark.qemu
@pytest.mark.slow
def test_arm_instruction_counts_join_the_report(full_run, fast_flags, tmp_path):
    from device_bench import qemu

    ok, reason = qemu.available()
    if not ok:
        pytest.skip(reason)
    out = tmp_path / "out"
    shutil.copytree(full_run[0], out)  # a copy: the finished stages are reused, the shared run stays as it was
    report = json.loads((out / "report.json").read_text())
    flags = [f for f in fast_flags if f not in ("--arm", "none")]
    so, se = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(so), contextlib.redirect_stderr(se):
        rc = main(["run", report["model"]["path"], "--data", report["data"]["test"]["spec"], "--out", str(out),
                   "--schemes", "channel,spatial", *flags, "--arm", "cortex-a76"])
    assert rc == 0, se.getvalue()
    assert "stage arm:cortex-a76:baseline-int8: ran in" in se.getvalue()
    assert "stage export:baseline-int8: cached (skipped)" in se.getvalue()
    report = json.loads((out / "report.json").read_text())
    assert report["arm"] == {"available": True, "reason": None, "profiles": ["cortex-a76"]}
    for v in report["variants"]:
        arm = v["arm"]["cortex-a76"]
        if v["precision"] == "int8":
            assert arm["error"] is None and arm["instructions"] > 10_000, v["id"]
            assert arm["ratio"] > 0
        else:
            assert arm["instructions"] is None  # emulation is slow: float32 only with --arm-precisions
    assert next(v for v in report["variants"] if v["id"] == "baseline-int8")["arm"]["cortex-a76"]["ratio"] == 1.0
    assert "ARM instr (cortex-a76)" in (out / "report.md").read_text()
