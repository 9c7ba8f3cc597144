"""`device_bench.costs`: many small models timed side by side, without TensorFlow."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from device_bench.costs import time_models
from device_bench.errors import BenchError

FIXTURES = Path(__file__).resolve().parents[1] / "arm" / "fixtures"


def test_times_every_model_in_order():
    paths = [FIXTURES / "small_cnn_int8.tflite", FIXTURES / "softmax_int8.tflite"]
    us = time_models(paths, rounds=3, round_secs=0.01)
    assert len(us) == 2 and all(u > 0 for u in us)
    assert us[0] > us[1]  # a CNN costs more than a lone softmax


def test_bad_settings_and_files_are_one_line_errors(tmp_path):
    with pytest.raises(BenchError, match="rounds"):
        time_models([FIXTURES / "softmax_int8.tflite"], rounds=0)
    bad = tmp_path / "x.tflite"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(BenchError, match="not a .tflite"):
        time_models([bad])


def test_command_line_prints_json_and_never_imports_tensorflow():
    code = ("import sys, runpy; sys.argv=['x', %r, '--rounds', '2', '--round-secs', '0.01'];"
            "import device_bench.costs as c; rc = c.main(sys.argv[1:]);"
            "assert 'tensorflow' not in sys.modules; sys.exit(rc)") % str(FIXTURES / "softmax_int8.tflite")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(data["us"]) == 1 and data["us"][0] > 0 and data["threads"] == 1
