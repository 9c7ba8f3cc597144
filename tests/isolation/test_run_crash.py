"""A real native crash (SIGSEGV in the converter's child) in `edge-lowrank run` and `convert`: one line naming
the stage, the file and the signal, no traceback, the other variants reported, exit 1."""

import json
import os
import subprocess
import sys

import pytest

FIXTURE = "tests/fixtures/small_cnn_fmnist.keras"
RUN_FLAGS = ["--schemes", "spatial", "--finetune-epochs", "0", "--eval-samples", "100", "--calib-samples", "32",
             "--num-runs", "5", "--min-secs", "0.05", "--arm", "none", "--no-progress", "--no-c-arrays"]


def cli(repo_root, args, crash_glob):
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONHASHSEED": "0",
           "OPENBLAS_NUM_THREADS": "1", "EDGE_LOWRANK_TEST_CRASH": crash_glob}
    env.pop("EDGE_LOWRANK_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "edge_lowrank", *map(str, args)], env=env, cwd=repo_root,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_run_reports_the_other_variants_and_exits_1(repo_root, tmp_path):
    out = tmp_path / "out"
    p = cli(repo_root, ["run", FIXTURE, "--out", out, *RUN_FLAGS], "TFLite converter (int8):models/spatial.keras")
    assert p.returncode == 1, p.stderr
    assert "Traceback" not in p.stderr and "Segmentation fault" not in p.stderr
    final = [ln for ln in p.stderr.splitlines() if "error:" in ln]
    assert final == ["edge-lowrank run: error: 1 stage(s) crashed, the report lists the other variants: "
                     "export:spatial-int8: TFLite converter (int8) on models/spatial.keras crashed: "
                     "SIGSEGV (signal 11)"], p.stderr
    report = json.loads((out / "report.json").read_text())
    by_id = {v["id"]: v for v in report["variants"]}
    assert set(by_id) == {"baseline-float32", "baseline-int8", "spatial-float32", "spatial-int8"}
    crashed = by_id.pop("spatial-int8")
    assert crashed["error"] == "TFLite converter (int8) on models/spatial.keras crashed: SIGSEGV (signal 11)"
    assert crashed["top1"] is None and not (out / "tflite" / "spatial-int8.tflite").exists()
    for v in by_id.values():  # the others were converted, scored and timed
        assert v["error"] is None and v["top1"] > 0.5 and v["host_median_us"] > 0, v
    assert (out / "report.md").is_file() and (out / "report.html").is_file()


@pytest.mark.slow
def test_convert_tflm_crash_is_one_line_and_writes_nothing(repo_root, tmp_path):
    out = tmp_path / "m.tflite"
    p = cli(repo_root, ["convert", FIXTURE, "--mode", "int8", "-o", out, "--c-array", tmp_path / "m.cc",
                        "--calib-samples", "32", "--eval-samples", "20"], f"TFLM check:{out}")
    assert p.returncode == 1, p.stderr
    assert p.stderr.strip() == f"edge-lowrank convert: error: TFLM check on {out} crashed: SIGSEGV (signal 11)"
    assert list(tmp_path.iterdir()) == []
