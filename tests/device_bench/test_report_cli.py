"""Reports (JSON schema, CSV, Markdown) and the command line (`edge-lowrank bench`, `python -m device_bench`)."""

import csv
import io
import json
import os
import subprocess
import sys

import jsonschema
import pytest
from conftest import REPO, fast_params

from device_bench import bench_models, compare, report
from device_bench.results import SCHEMA_VERSION

FAST_FLAGS = ["--num-runs", "5", "--min-secs", "0", "--warmup-min-secs", "0"]


@pytest.fixture(scope="module")
def results(models, corrupt_files):
    return bench_models([models["f32"], models["int8"], corrupt_files["truncated"]], fast_params())


def test_json_validates_against_schema_and_round_trips(results):
    rows = compare(results, 0)
    text = report.to_json(results, rows)
    doc = json.loads(text)
    schema = json.loads(report.SCHEMA_PATH.read_text())
    jsonschema.validate(doc, schema)
    assert doc["schema_version"] == SCHEMA_VERSION
    back, back_rows = report.from_json(text)
    assert [r.to_dict() for r in back] == [r.to_dict() for r in results]
    assert back_rows == rows
    with pytest.raises(ValueError, match="schema"):
        report.from_json(json.dumps({"schema": "other", "results": []}))


def test_csv_and_markdown(results):
    rows = list(csv.DictReader(io.StringIO(report.to_csv(results, compare(results, 0)))))
    assert len(rows) == 3 and rows[0]["model"].endswith("tiny_f32.tflite")
    assert float(rows[0]["p5_us"]) <= float(rows[0]["median_us"]) <= float(rows[0]["p95_us"])
    assert rows[2]["error"] and rows[2]["median_us"] == ""
    md = report.to_markdown(results)
    assert md.count("\n| `") == 3 and "Errors:" in md and "truncated.tflite" in md


def _cli(args, cwd):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "edge_lowrank.cli.main", "bench", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=300)


def test_cli_writes_reports_and_flags_failed_models(models, corrupt_files, tmp_path):
    out = _cli([str(models["f32"]), str(models["int8"]), str(corrupt_files["random"]), "--baseline",
                str(models["f32"]), "--xnnpack", "both", "--data", "fashion-mnist:test", "--limit", "50",
                "--json", "r.json", "--csv", "r.csv", *FAST_FLAGS], tmp_path)
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0  # one line
    assert "2 of 6 model(s) failed" in out.stderr and "Traceback" not in out.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    assert len(doc["results"]) == 6  # 3 models x XNNPACK on/off
    assert [r["params"]["xnnpack"] for r in doc["results"]] == [True, False] * 3
    assert doc["results"][1]["accuracy"] == doc["results"][0]["accuracy"] is not None
    assert doc["comparison"][0]["speedup"] == pytest.approx(1.0)
    assert "speedup" in out.stdout and (tmp_path / "r.csv").exists()


@pytest.mark.parametrize("args, message", [
    (["--target", "gpu"], "Invalid target"),
    (["--data", "nope.npz"], "does not exist"),
    (["--num-runs", "-3"], "num_runs"),
    (["--target", "ssh://bad host"], "Invalid target"),
])
def test_cli_bad_input_one_line_and_no_output(models, tmp_path, args, message):
    out = _cli([str(models["int8"]), "--json", "r.json", *FAST_FLAGS, *args], tmp_path)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], out.stderr
    assert not (tmp_path / "r.json").exists() and list(tmp_path.iterdir()) == []


def test_python_m_device_bench_prints_json(models):
    out = subprocess.run([sys.executable, "-m", "device_bench", str(models["int8"]), "--json", "-", *FAST_FLAGS],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["results"][0]["inference_us"]["count"] == 5
