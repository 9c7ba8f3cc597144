"""`run --executor ray` on a real two-node Ray cluster (a head and one worker node, both on 127.0.0.1, started
with the `ray` CLI of this venv): a worker process is killed in the middle of a model stage, Ray reruns the
task, and the run gives the same variants, MACs and top-1 as the local executor; a local rerun of the same
folder then skips every stage (the stage keys do not name the executor)."""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the `ray` extra is not installed (make test installs it)")

from edge_lowrank.pipeline.executor import KILL_ONCE_ENV  # noqa: E402
from edge_lowrank.pipeline.report import comparable  # noqa: E402

RAY_CLI = Path(sys.executable).parent / "ray"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_cluster(folder: str) -> None:
    """SIGKILL, by pid, the processes whose command line names this cluster's temp folder, and their children
    (Ray's agents rename themselves). Not `ray stop`: that kills every Ray of this user on the machine."""
    procs = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
                procs[int(p.name)] = (ppid, (p / "cmdline").read_bytes())
            except (OSError, ValueError, IndexError):
                continue
    todo = [pid for pid, (_, cmd) in procs.items() if folder.encode() in cmd and pid != os.getpid()]
    seen = set()
    while todo:
        pid = todo.pop()
        seen.add(pid)
        todo += [c for c, (pp, _) in procs.items() if pp == pid and c not in seen]
    for pid in seen:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def ray_cluster():
    """(address, env) of a head plus one worker node, 1 CPU each; everything killed at the end."""
    # Ray's unix socket paths must stay under 107 bytes: a short folder in the temp dir, not pytest's tmp_path.
    folder = tempfile.mkdtemp(prefix="elr-ray-")
    # Ray 2.60 turns token auth on for `ray start --head` once ~/.ray/auth_token exists but not for a joining
    # node: state it for every process of this cluster, with a token of its own.
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONHASHSEED": "0",
           "OPENBLAS_NUM_THREADS": "1"}
    env.pop("RAY_ADDRESS", None)
    port = _free_port()

    def start(*args):
        # `ray start` gives a raylet 30 s (hard-coded in Ray 2.60) to register: on a loaded 2-core machine that
        # can pass, so try again; a late first raylet only adds a node
        for attempt in range(3):
            common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", f"--temp-dir={folder}", "--disable-usage-stats",
                      f"--dashboard-agent-listen-port={_free_port()}", f"--metrics-export-port={_free_port()}"]
            r = subprocess.run([str(RAY_CLI), "start", *args, *common], env=env, capture_output=True, text=True,
                               timeout=240)
            if r.returncode == 0:
                return
        raise AssertionError(f"ray start {args[0]} failed 3 times: {r.stderr[-1500:]}")

    try:
        start("--head", f"--port={port}", "--include-dashboard=false", f"--dashboard-port={_free_port()}",
              f"--ray-client-server-port={_free_port()}")
        start(f"--address=127.0.0.1:{port}")
        yield f"127.0.0.1:{port}", env
    finally:
        _kill_cluster(folder)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_ray_run_with_a_killed_worker_matches_local(ray_cluster, tiny, full_run, fast_flags, tmp_path):
    address, env = ray_cluster
    model, npz = tiny
    out = tmp_path / "out"
    marker = tmp_path / "killed-once"  # the first model task writes its pid here, then waits to be killed
    args = ["run", model, "--data", npz, "--out", out, "--schemes", "channel,spatial", *fast_flags]
    proc = subprocess.Popen([sys.executable, "-m", "edge_lowrank", *map(str, args), "--executor", "ray",
                             "--ray-address", address], env={**env, KILL_ONCE_ENV: str(marker)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = {}

    def kill_once():
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            text = marker.read_text() if marker.exists() else ""
            if text.endswith("\n"):
                killed["pid"] = int(text)
                os.kill(killed["pid"], signal.SIGKILL)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_once, daemon=True)
    killer.start()
    try:
        stdout, stderr = proc.communicate(timeout=420)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    killer.join(5)
    assert proc.returncode == 0, stderr[-3000:]
    assert killed, "no model task reached the kill hook"

    ray_report = json.loads((out / "report.json").read_text())
    local_report = json.loads((full_run[0] / "report.json").read_text())

    def figures(report):
        return [(v["id"], v["params"], v["macs"], v["top1"], v["size_bytes"]) for v in report["variants"]]

    assert figures(ray_report) == figures(local_report)
    assert comparable(ray_report) == comparable(local_report)  # everything else too, timings apart
    ex = ray_report["timings"]["executor"]
    assert ex["name"] == "ray" and ex["nodes"] >= 2
    assert {s for s in ex["stages_ran_on"]} == {"model:channel", "model:spatial", *(
        f"export:{s}-{p}" for s in ("baseline", "channel", "spatial") for p in ("float32", "int8"))}
    assert len({n["ray_node_id"] for n in ex["stages_ran_on"].values()}) == 2, "both nodes ran stages"
    assert "ray_node_id" in ray_report["timings"]["measured_on"]["bench:host"]
    assert not [p for p in out.rglob(".*") if p.is_file()], "a temporary file of an atomic write was left"

    # the same folder on the local executor: every stage is found in the cache the Ray run wrote
    again = subprocess.run([sys.executable, "-m", "edge_lowrank", *map(str, args)], env=env, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "ran in" not in again.stderr and again.stderr.count("cached (skipped)") == 10
