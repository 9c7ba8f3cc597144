"""The microcontroller target with the real tflite-micro interpreter: arena search, flash, ops, agreement."""

import numpy as np
import pytest
from conftest import fast_params

from device_bench import bench_models
from device_bench.datasets import load_dataset
from device_bench.inputs import random_inputs
from device_bench.tflm import ALIGN, probe_arena

pytestmark = pytest.mark.tflm
pytest.importorskip("tflite_micro")


@pytest.fixture(scope="module")
def int8_tflm(models):
    data = load_dataset("fashion-mnist:test").take(100)
    (r,) = bench_models([models["int8"]], fast_params(), target="tflm", data=data)
    return r


def test_arena_works_and_one_step_below_fails_cleanly(models, int8_tflm):
    r = int8_tflm
    assert r.error is None and r.target == "tflm"
    assert r.arena_bytes > 0 and r.arena_bytes % ALIGN == 0
    model = models["int8"].read_bytes()
    from device_bench import _interpreter

    interp = _interpreter.make_interpreter(str(models["int8"]), num_threads=1, xnnpack=False)
    inputs = random_inputs(interp.get_input_details())
    ok, msg = probe_arena(model, r.arena_bytes, inputs)
    assert ok, msg
    ok, msg = probe_arena(model, r.arena_bytes - ALIGN, inputs)
    assert not ok and msg  # a clean "no" with TFLM's reason, whether it raised or crashed in the probe
    assert r.extra["arena_below_fails"]


def test_flash_agreement_and_accuracy(models, int8_tflm):
    r = int8_tflm
    assert r.extra["flash_bytes"] == models["int8"].stat().st_size
    agree = r.extra["tflm_vs_litert"]
    assert agree["samples"] > 0 and agree["argmax_agreement"] == 1.0
    assert agree["max_diff_quanta"] <= 1  # int8 reference kernels vs LiteRT's builtin kernels
    (host,) = bench_models([models["int8"]], fast_params(xnnpack=False), data=load_dataset("fashion-mnist:test").take(100))
    assert abs(r.accuracy - host.accuracy) <= 0.02
    assert np.asarray(r.confusion).sum() == 100
    s = r.inference_us
    assert s.count == 5 and s.min <= s.p5 <= s.median <= s.p95 <= s.max


def test_missing_ops_are_reported(models):
    (r,) = bench_models([models["topk"]], fast_params(), target="tflm")
    assert r.error == "TFLM lacks kernels for: TOPK_V2."
    assert r.extra["missing_ops"] == ["TOPK_V2"]


def test_corrupt_file_on_tflm_is_an_error_row(corrupt_files):
    rows = bench_models([corrupt_files["truncated"], corrupt_files["absurd_shape"]], fast_params(), target="tflm")
    assert all(r.error for r in rows)
