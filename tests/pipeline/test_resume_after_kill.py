"""Kill `edge-lowrank run` for real midway, run it again: finished stages are not redone, the report is the same."""

import json
import signal
import time

import pytest

from edge_lowrank.pipeline.report import comparable


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_report(cli_subprocess, fast_flags, tiny, full_run, tmp_path):
    model, npz = tiny
    out = tmp_path / "out"  # given as a relative path, as `make demo` does
    args = ["run", model, "--data", npz, "--out", "out", "--schemes", "channel,spatial", *fast_flags]
    first = out / ".stages" / "model_channel.json"
    proc = cli_subprocess(args, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 300
        while not first.exists():
            assert proc.poll() is None, f"run ended before the first model stage: {proc.communicate()[1][-800:]}"
            assert time.monotonic() < deadline, "no stage finished within 300 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "report.json").exists()
    done = {p.name: p.stat().st_mtime_ns for p in (out / ".stages").glob("*.json")}
    assert {"baseline.json", "model_channel.json"} <= set(done)
    finished = [json.loads((out / ".stages" / name).read_text())["stage"] for name in done]
    kept = {p: p.stat().st_mtime_ns for p in (out / "models").glob("*.keras")}

    again = cli_subprocess(args, cwd=tmp_path)
    stdout, stderr = again.communicate(timeout=600)
    assert again.returncode == 0, stderr[-2000:]
    for stage in finished:
        assert f"stage {stage}: cached (skipped)" in stderr
    assert "ran in" in stderr, "the kill came before the end, so the rerun had work left"
    for name, mtime in done.items():
        assert (out / ".stages" / name).stat().st_mtime_ns == mtime, f"{name} was redone"
    for path, mtime in kept.items():
        assert path.stat().st_mtime_ns == mtime
    assert not [p for p in out.rglob(".*") if p.is_file()], "a temporary file of an atomic write was left"

    resumed = json.loads((out / "report.json").read_text())
    uninterrupted = json.loads((full_run[0] / "report.json").read_text())
    assert comparable(resumed) == comparable(uninterrupted)
