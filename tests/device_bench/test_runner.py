"""The host runner against the real LiteRT interpreter: statistics, loop rules, interleaving, TF-free import."""

import json
import math
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import REPO, fast_params

import device_bench
from device_bench import BenchParams, bench_models, measure
from device_bench.stats import phase_done, round_quota


def test_import_does_not_pull_tensorflow():
    code = ("import sys, device_bench, device_bench.bench, device_bench.host, device_bench.measure, "
            "device_bench.cli, device_bench.report, device_bench.ssh, device_bench.tflm, device_bench.compare, "
            "device_bench._worker; "
            "bad = [m for m in ('tensorflow', 'keras', 'tf_keras') if m in sys.modules]; "
            "assert not bad, bad; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_runs_where_only_device_bench_exists(models, tmp_path):
    """`python -m device_bench` from a bare copy, with edge_lowrank, TensorFlow and Keras made unimportable."""
    shutil.copytree(REPO / "device_bench", tmp_path / "device_bench",
                    ignore=shutil.ignore_patterns("__pycache__", "qemu"))
    code = ("import sys, runpy\n"
            "for m in ('edge_lowrank', 'tensorflow', 'keras', 'converters'): sys.modules[m] = None\n"
            f"sys.argv = ['device_bench', {str(models['int8'])!r}, '--num-runs', '3', '--min-secs', '0', "
            "'--warmup-min-secs', '0', '--json', '-']\n"
            "runpy.run_module('device_bench', run_name='__main__')\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["results"][0]["inference_us"]["count"] == 3
    assert doc["results"][0]["error"] is None


@pytest.mark.parametrize("xnnpack", [True, False])
def test_statistics_are_consistent(models, xnnpack):
    r = measure(models["f32"], fast_params(num_runs=40, xnnpack=xnnpack))
    s = r.inference_us
    assert s.count == 40 == len(r.samples_us)
    assert s.min <= s.p5 <= s.median <= s.p95 <= s.max
    assert s.min <= s.mean <= s.max
    assert s.first == r.samples_us[0]
    assert s.std == pytest.approx(float(np.std(r.samples_us)))  # population std, as TFLite's tool
    assert r.init_us > 0 and r.first_inference_us > 0 and r.warmup_mean_us > 0
    assert r.model_size_mb == pytest.approx(os.path.getsize(models["f32"]) / 1e6)
    assert r.rss_after_init_mb > 0 and r.peak_rss_mb >= r.rss_after_init_mb
    assert r.env["xnnpack"] is xnnpack and r.env["threads"] == 1 and r.env["emulated"] is False
    assert r.env["runtime"].startswith("ai-edge-litert") and r.env["cpu"]
    if xnnpack:
        assert r.delegate_partitions == 1 and r.nodes_outside_delegate == 0  # float32 CNN: all delegated
    else:
        assert r.delegate_partitions == 0 and r.nodes_outside_delegate == len(r.extra["ops_outside_delegate"]) > 0


def test_int8_softmax_stays_outside_xnnpack(models):
    r = measure(models["int8"], fast_params())
    assert r.delegate_partitions == 1
    assert r.extra["ops_outside_delegate"] == ["SOFTMAX"]  # NOTES: int8 SOFTMAX is not delegated


def test_partitions_around_an_op_xnnpack_does_not_take(models):
    r = measure(models["split"], fast_params())
    assert r.extra["ops_outside_delegate"] == ["TOPK_V2"]
    assert r.delegate_partitions == 2 and r.nodes_outside_delegate == 1


def test_loop_rules_follow_tflite_benchmark_tool(models):
    # Run counts: exactly the minimum when min_secs is 0; warm-up likewise.
    r = measure(models["int8"], fast_params(num_runs=7, warmup_runs=3))
    assert r.inference_us.count == 7 and r.extra["warmup_runs_done"] == 3
    # min_secs keeps running past num_runs.
    t0 = time.perf_counter()
    r = measure(models["int8"], fast_params(num_runs=1, min_secs=0.3))
    assert time.perf_counter() - t0 >= 0.3 and r.inference_us.count > 1
    # max_secs stops even if num_runs is not reached.
    t0 = time.perf_counter()
    r = measure(models["int8"], fast_params(num_runs=10 ** 9, max_secs=0.2))
    assert 1 <= r.inference_us.count < 10 ** 9 and time.perf_counter() - t0 < 5
    # The predicate itself.
    assert not phase_done(49, 2.0, 50, 1.0, 150.0) and not phase_done(50, 0.9, 50, 1.0, 150.0)
    assert phase_done(50, 1.0, 50, 1.0, 150.0) and phase_done(3, 150.0, 50, 1.0, 150.0)


def test_defaults_match_tflite_benchmark_tool():
    p = BenchParams()
    assert (p.num_runs, p.min_secs, p.max_secs, p.warmup_runs, p.warmup_min_secs) == (50, 1.0, 150.0, 1, 0.5)


def test_interleaved_rounds_add_up_to_the_loop_rule(models):
    p = fast_params(num_runs=10, rounds=4)
    results = bench_models([models["f32"], models["int8"]], p)
    runs, _, _ = round_quota(p, 4)
    assert runs == math.ceil(10 / 4)
    for r in results:
        assert r.error is None
        assert len(r.round_medians_us) == 4
        assert r.inference_us.count == 4 * runs >= p.num_runs
        assert r.model in (str(models["f32"]), str(models["int8"]))


def test_random_and_npz_inputs(models, tmp_path):
    from device_bench.datasets import load_dataset

    ds = load_dataset("fashion-mnist:test").take(2)
    np.savez(tmp_path / "in.npz", x=ds.x, y=ds.y)
    (r,) = bench_models([models["int8"]], fast_params(), inputs=str(tmp_path / "in.npz"))
    assert r.error is None and r.inference_us.count == 5


def test_bad_parameters_and_targets_give_one_clear_error(models):
    with pytest.raises(device_bench.BenchError, match="num_runs"):
        bench_models([models["f32"]], BenchParams(num_runs=-1))
    with pytest.raises(device_bench.BenchError, match="Invalid target"):
        bench_models([models["f32"]], fast_params(), target="gpu")
    with pytest.raises(ValueError, match="fashion-mnist"):
        bench_models([models["f32"]], fast_params(), data="cifar-10")
    with pytest.raises(device_bench.BenchError, match="Invalid QEMU profile `no-such-cpu`"):
        bench_models([models["f32"]], fast_params(), target="qemu:no-such-cpu")
    with pytest.raises(device_bench.BenchError, match="at least one"):
        bench_models([], fast_params())


def test_worker_peak_rss_is_its_own_not_the_parents(models):
    """ru_maxrss survives fork + exec on Linux: the worker must not report the parent's peak."""
    from device_bench.sysinfo import rss_mb

    ballast = np.ones(300 * 2 ** 20 // 8)  # 300 MiB touched in the parent
    (r,) = bench_models([models["int8"]], fast_params())
    assert rss_mb() > 300 and r.peak_rss_mb < 250
    assert r.peak_rss_mb >= r.rss_after_init_mb > 0
    del ballast
