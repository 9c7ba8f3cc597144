"""The executor's pieces that need no cluster: the settings, the missing-Ray error, an unreachable address, and
the driver writing a task's returned files and record into the run folder."""

import json
import os
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from edge_lowrank.pipeline.cache import StageCache, file_sha256
from edge_lowrank.pipeline.config import ConfigError, RunConfig, from_args, load_toml
from edge_lowrank.pipeline.executor import ExecutorError, LocalExecutor, make_executor


def test_executor_settings_from_flags_and_toml(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('[run]\nexecutor = "ray"\nray-address = "10.0.0.5:6379"\n')
    assert load_toml(toml) == {"executor": "ray", "ray_address": "10.0.0.5:6379"}
    args = SimpleNamespace(config=str(toml), executor=None, ray_address=None)
    cfg = from_args(args)
    assert (cfg.executor, cfg.ray_address) == ("ray", "10.0.0.5:6379")
    args = SimpleNamespace(config=str(toml), executor="local", ray_address=None)  # a flag wins over the file
    with pytest.raises(ConfigError, match="needs executor = ray"):
        from_args(args)
    assert isinstance(make_executor(RunConfig().validate()), LocalExecutor)
    with pytest.raises(ConfigError, match="Expected local or ray"):
        RunConfig(executor="dask").validate()


def test_missing_ray_is_one_line_before_any_work(tmp_path):
    """Ray hidden from the import system: `run --executor ray` exits 1 with one line saying what to install."""
    code = ("import sys; sys.modules['ray'] = None\n"
            "from edge_lowrank.cli.main import main\n"
            f"sys.exit(main(['run', '--out', {str(tmp_path / 'out')!r}, '--executor', 'ray', '--no-progress']))")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1
    lines = [ln for ln in r.stderr.splitlines() if "edge-lowrank" in ln]
    assert len(lines) == 1 and "pip install 'edge-lowrank[ray]'" in lines[0], r.stderr[-800:]
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists(), "nothing is written before the executor is known to work"


def test_unreachable_ray_address_fails_in_seconds():
    pytest.importorskip("ray")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ex = make_executor(RunConfig(executor="ray", ray_address=f"127.0.0.1:{port}").validate())
    t0 = time.monotonic()
    with pytest.raises(ExecutorError, match=f"Cannot join Ray at 127.0.0.1:{port}: nothing answers"):
        ex._connect()
    assert time.monotonic() - t0 < 15
    with pytest.raises(ExecutorError, match="Expected HOST:PORT"):
        make_executor(RunConfig(executor="ray", ray_address="head-node").validate())._connect()


def test_driver_writes_a_task_result_and_its_files(tmp_path):
    """What a Ray task returns (result + file bytes by relative path) lands atomically in the run folder and
    in a record the next run (either executor) finds; a path out of the folder is refused."""
    pytest.importorskip("ray")
    from edge_lowrank.pipeline.progress import StageProgress
    from edge_lowrank.pipeline.stages import Pipeline

    ex = make_executor(RunConfig(executor="ray").validate())
    pipe = Pipeline(RunConfig().validate(), progress=StageProgress(enabled=False))
    pipe.out, pipe.cache = tmp_path, StageCache(tmp_path)
    data = b"TFL3" + bytes(range(256))
    result = {"id": "spatial-int8", "tflite": "tflite/spatial-int8.tflite", "size_bytes": len(data), "error": None}
    out = {"result": result, "files": {"tflite/spatial-int8.tflite": data}, "log": ["  a line"], "notes": [],
           "crashes": [], "node": {"hostname": "w1", "ray_node_id": "abc"}, "seconds": 1.5}
    key, started, cached = pipe._stage_begin("export:spatial-int8", {"k": 1})
    assert cached is None
    got = ex._finish(pipe, "export:spatial-int8", key, started, out)
    assert got == result
    assert (tmp_path / "tflite" / "spatial-int8.tflite").read_bytes() == data
    rec = json.loads((tmp_path / ".stages" / "export_spatial-int8.json").read_text())
    assert rec["files"] == {"tflite/spatial-int8.tflite": file_sha256(tmp_path / "tflite" / "spatial-int8.tflite")}
    assert rec["seconds"] == 1.5 and ex.ran_on["export:spatial-int8"]["hostname"] == "w1"
    assert pipe._stage_begin("export:spatial-int8", {"k": 1})[2] == result  # the next run skips it
    assert not [p for p in tmp_path.rglob(".*") if p.is_file()]

    failed = {**out, "result": {**result, "tflite": None, "error": "ValueError: no"}, "files": {}}
    key, started, _ = pipe._stage_begin("export:spatial-int8", {"k": 2})
    ex._finish(pipe, "export:spatial-int8", key, started, failed)
    assert not (tmp_path / "tflite" / "spatial-int8.tflite").exists(), "a failed export leaves no stale file"

    evil = {**out, "files": {"../escaped.bin": b"x"}}
    with pytest.raises(ExecutorError, match="outside the run folder"):
        ex._finish(pipe, "export:x", key, started, evil)
    assert not (tmp_path.parent / "escaped.bin").exists()


@pytest.mark.slow
def test_a_task_lost_after_its_retries_becomes_an_error_row():
    """A worker that dies on every try: Ray gives up after the retries and the stage gets an error row (the
    run goes on with the others) instead of an exception. A real Ray started in this process, 1 CPU."""
    ray = pytest.importorskip("ray")
    from edge_lowrank.pipeline.executor import TASK_RETRIES, _failed_row

    ex = make_executor(RunConfig(executor="ray").validate())
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        ex.connected = ex.owned = True  # joined above; close() shuts down what it owns
        die = ray.remote(lambda: os._exit(1)).options(max_retries=TASK_RETRIES)
        value, failure = ex._get(die.remote())
        assert value is None and failure.startswith(f"Ray lost the task after {TASK_RETRIES} retries: ")
        row = _failed_row("model", {"scheme": "spatial"}, failure)
        assert row["status"] == "error" and row["message"] == failure and row["keras"] is None
    finally:
        ex.close()
    assert not ray.is_initialized()
