"""Crash isolation: broken files and hung runs become error rows; the harness and the other models go on."""

import time

from conftest import fast_params

from device_bench import bench_models


def test_corrupt_files_become_error_rows(models, corrupt_files):
    paths = list(corrupt_files.values()) + [models["int8"]]
    results = bench_models(paths, fast_params())
    assert len(results) == len(paths)
    bad, good = results[:-1], results[-1]
    assert len(bad) >= 5
    for kind, r in zip(corrupt_files, bad):
        assert r.error, kind
        assert "\n" not in r.error and str(corrupt_files[kind]) in r.error, r.error
        assert r.inference_us is None
    assert good.error is None and good.inference_us.count == 5
    by_kind = dict(zip(corrupt_files, bad))
    assert "0 bytes" in by_kind["empty"].error
    assert "file identifier" in by_kind["wrong_magic"].error
    assert "not a valid Flatbuffer" in by_kind["truncated"].error
    assert "GiB" in by_kind["absurd_shape"].error


def test_missing_file_is_an_error_row(models, tmp_path):
    (r,) = bench_models([tmp_path / "nope.tflite"], fast_params())
    assert "does not exist" in r.error


def test_hung_child_is_killed_at_timeout(models):
    t0 = time.perf_counter()
    slow, ok = bench_models([models["int8"], models["f32"]],
                            [fast_params(min_secs=60.0, timeout_s=3.0), fast_params()], interleave=False)
    assert "timed out after 3 s" in slow.error
    assert ok.error is None
    assert time.perf_counter() - t0 < 30


def test_timeout_counts_only_a_childs_own_work(models):
    """Interleaved: each child works ~2 s of a 3.5 s budget while the other child's rounds take ~2 s more."""
    p = fast_params(num_runs=4, rounds=4, min_secs=2.0, timeout_s=3.5)
    a, b = bench_models([models["int8"], models["f32"]], p)
    assert a.error is None and b.error is None, (a.error, b.error)


def test_a_child_killed_by_a_signal_is_reported(models, tmp_path):
    """A native crash kills the child with a signal: the parent names it instead of hanging or dying."""
    import dataclasses
    import os
    import signal

    import pytest

    from device_bench.host import Worker, WorkerError

    w = Worker(60.0, str(tmp_path))
    try:
        w.request(cmd="load", path=str(models["int8"]), params=dataclasses.asdict(fast_params()), inputs=None)
        os.kill(w.proc.pid, signal.SIGSEGV)
        with pytest.raises(WorkerError, match="worker crashed \\(killed by SIGSEGV\\)"):
            w.request(cmd="warmup")
    finally:
        w.kill()
        w.close()
