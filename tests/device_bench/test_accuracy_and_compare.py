"""Accuracy through the bench equals the converter's fidelity figure; XNNPACK side by side; speedup CIs."""

import numpy as np
import pytest
from conftest import fast_params

from device_bench import bench_models, compare
from device_bench.datasets import load_dataset


def _check_accuracy_row(r, n):
    assert r.error is None
    cm = np.asarray(r.confusion)
    assert cm.shape == (10, 10) and cm.sum() == n
    assert r.accuracy == pytest.approx(np.trace(cm) / n)


def test_int8_accuracy_equals_converter_fidelity(models):
    fid = models["fidelity"]
    data = load_dataset(fid["data"]).take(fid["n"])
    (r,) = bench_models([models["int8"]], fast_params(), data=data)
    _check_accuracy_row(r, fid["n"])
    assert r.accuracy == pytest.approx(fid["accuracy_tflite"], abs=1e-12)
    assert r.accuracy > 0.3  # a trained model, not chance


def test_accuracy_from_npz_matches_builtin_data(models, tmp_path):
    data = load_dataset("fashion-mnist:test").take(200)
    np.savez(tmp_path / "d.npz", x=(data.x[..., 0] * 255).round().astype(np.uint8), y=data.y)
    (b,) = bench_models([models["int8"]], fast_params(), data=str(tmp_path / "d.npz"))
    (c,) = bench_models([models["int8"]], fast_params(), data=data)
    assert b.accuracy is not None and b.extra["data"].endswith("d.npz")
    assert b.accuracy == c.accuracy and b.confusion == c.confusion


def test_unlabelled_data_is_refused(models, tmp_path):
    np.savez(tmp_path / "x.npz", x=np.zeros((3, 28, 28), np.float32))
    with pytest.raises(ValueError, match="no labels"):
        bench_models([models["int8"]], fast_params(), data=str(tmp_path / "x.npz"))


def _xnnpack_side_by_side(path, **kw):
    p_on, p_off = fast_params(num_runs=30, rounds=5, **kw), fast_params(num_runs=30, rounds=5, xnnpack=False, **kw)
    on, off = bench_models([path, path], [p_on, p_off])
    assert on.error is None and off.error is None
    rows = compare([on, off], baseline=1)  # speedup of XNNPACK on against off
    return on, off, rows


def test_xnnpack_on_is_faster_than_off_tiny_int8(models):
    on, off, rows = _xnnpack_side_by_side(models["int8"])
    assert on.label.endswith(".tflite") and off.label.endswith("[xnnpack off]")
    assert on.inference_us.median < off.inference_us.median
    assert rows[0]["speedup"] > 1 and rows[0]["ci_low"] <= rows[0]["speedup"] <= rows[0]["ci_high"]
    assert rows[1]["speedup"] == pytest.approx(1.0) and rows[0]["method"].startswith("paired")


@pytest.mark.slow
def test_sample_int8_xnnpack_speed_and_accuracy(sample_int8):
    """The committed sample model: XNNPACK on beats off, and bench accuracy equals the converter's figure."""
    on, off, rows = _xnnpack_side_by_side(sample_int8["int8"])
    assert on.inference_us.median < off.inference_us.median and rows[0]["ci_low"] > 1
    fid = sample_int8["fidelity"]
    (r,) = bench_models([sample_int8["int8"]], fast_params(), data=load_dataset(fid["data"]).take(fid["n"]))
    _check_accuracy_row(r, fid["n"])
    assert r.accuracy == pytest.approx(fid["accuracy_tflite"], abs=1e-12)


def test_compare_baseline_by_name_and_errors(models, corrupt_files):
    results = bench_models([models["f32"], models["int8"], corrupt_files["empty"]], fast_params(num_runs=10, rounds=5))
    rows = compare(results, baseline="tiny_f32.tflite")
    assert rows[0]["speedup"] == pytest.approx(1.0)
    assert rows[1]["speedup"] > 0 and rows[1]["ci_low"] <= rows[1]["speedup"] <= rows[1]["ci_high"]
    assert rows[2]["speedup"] is None and "0 bytes" in rows[2]["error"]
    # Seeded: the same results give the same interval.
    assert compare(results, baseline=0) == rows
    with pytest.raises(ValueError, match="not among"):
        compare(results, baseline="nope.tflite")


def test_emulated_rows_compare_by_instruction_count():
    from device_bench import BenchResult

    a = BenchResult(model="a", target="qemu-aarch64:cortex-a76", model_size_mb=1.0, emulated=True,
                    instructions_per_inference=400_000)
    b = BenchResult(model="b", target="qemu-aarch64:cortex-a76", model_size_mb=1.0, emulated=True,
                    instructions_per_inference=100_000)
    from device_bench.results import Stats

    a.inference_us = b.inference_us = Stats(1, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0)
    rows = compare([a, b], "a")
    assert rows[1]["speedup"] == rows[1]["ci_low"] == rows[1]["ci_high"] == 4.0
    assert "instructions" in rows[1]["method"]


@pytest.mark.qemu
@pytest.mark.slow
def test_qemu_target_dispatches_to_the_arm_runner(models):
    from device_bench import qemu

    ok, reason = qemu.available()
    if not ok:
        pytest.skip(reason)
    a, b = bench_models([models["int8"], models["f32"]], fast_params(num_runs=2), target="qemu:cortex-a76")
    assert a.error is None and b.error is None
    assert a.emulated and a.instructions_per_inference > 0
    rows = compare([a, b], 1)
    assert rows[0]["speedup"] == pytest.approx(b.instructions_per_inference / a.instructions_per_inference)
