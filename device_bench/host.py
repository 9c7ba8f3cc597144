"""Run models on this machine, each in its own child process, timed in interleaved rounds (A B C A B C ...).

Interleaving spreads a noisy machine's slow spells over every model alike, so ratios between models hold even
when absolute numbers drift. A child that crashes, hangs past `timeout_s` or rejects its model becomes an error
row; the other models go on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .datasets import Dataset
from .results import BenchParams, BenchResult
from .stats import effective_rounds, round_quota

_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


class WorkerError(Exception):
    """The child failed, died or timed out; the message is the error row's text."""


class Worker:
    """One child process `python -m device_bench._worker` speaking JSON lines, with a wall-clock budget.

    The budget (`timeout_s`) counts only the time spent waiting for THIS child's replies, so in interleaved
    runs a child is not charged for the rounds of the other models.
    """

    def __init__(self, timeout_s: float, stderr_dir: str):
        env = dict(os.environ)
        env["PYTHONPATH"] = _PACKAGE_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        self._stderr = tempfile.TemporaryFile(dir=stderr_dir)
        self.proc = subprocess.Popen([sys.executable, "-m", "device_bench._worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._stderr, env=env, cwd=stderr_dir)
        self.timeout_s = timeout_s
        self.used_s = 0.0  # time spent on this child's requests; waiting for other models' rounds is free
        self._buf = b""

    def request(self, **req) -> dict:
        """Send one request and wait for its reply within the remaining budget."""
        try:
            self.proc.stdin.write((json.dumps(req) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise WorkerError(self._death()) from None
        fd = self.proc.stdout.fileno()
        start = time.monotonic()
        deadline = start + self.timeout_s - self.used_s
        try:
            while b"\n" not in self._buf:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.kill()
                    raise WorkerError(f"timed out after {self.timeout_s:g} s (child killed)")
                ready, _, _ = select.select([fd], [], [], min(remaining, 1.0))
                if ready:
                    chunk = os.read(fd, 1 << 16)
                    if not chunk:
                        raise WorkerError(self._death())
                    self._buf += chunk
        finally:
            self.used_s += time.monotonic() - start
        line, self._buf = self._buf.split(b"\n", 1)
        reply = json.loads(line)
        if not reply.get("ok"):
            raise WorkerError(reply.get("error") or "failed")
        return reply

    def _death(self) -> str:
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.proc.returncode
        if code is not None and code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        tail = self._stderr_tail()
        return f"worker crashed ({how})" + (f": {tail}" if tail else "")

    def _stderr_tail(self) -> str:
        try:
            self._stderr.seek(0)
            lines = [ln.strip() for ln in self._stderr.read().decode(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return ""
        lines = [ln for ln in lines if not ln.startswith("INFO:")]
        return lines[-1][:300] if lines else ""

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.proc.stdin.write(b'{"cmd": "exit"}\n')
                self.proc.stdin.flush()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(Exception):
                stream.close()
        self._stderr.close()


def error_result(path, params: BenchParams, message: str, target: str = "host") -> BenchResult:
    """An error row: the model's name, its size when readable, and one line saying what went wrong."""
    try:
        size = os.path.getsize(path) / 1e6
    except OSError:
        size = 0.0
    return BenchResult(model=str(path), target=target, model_size_mb=size, params=dataclasses.asdict(params),
                       error=message)


def write_data_npz(data: Dataset, folder: str) -> str:
    """Save a Dataset where children can read it with `load_npz` (float32 images, int labels)."""
    path = os.path.join(folder, "data.npz")
    arrays = {"x": np.asarray(data.x, dtype=np.float32)}
    if data.y is not None:
        arrays["y"] = np.asarray(data.y, dtype=np.int64)
    np.savez(path, **arrays)
    return path


def run_host(paths, params_list: list[BenchParams], *, data: Dataset | None = None, inputs_npz: str | None = None,
             interleave: bool = True) -> list[BenchResult]:
    """Benchmark each (path, params) in its own child; interleaved rounds when there are several."""
    n = len(paths)
    results: list[BenchResult | None] = [None] * n
    workers: list[Worker | None] = [None] * n
    with tempfile.TemporaryDirectory(prefix="device_bench.") as tmp:
        data_npz = write_data_npz(data, tmp) if data is not None and data.y is not None else None

        def fail(i, e):
            results[i] = error_result(paths[i], params_list[i], str(e))
            if workers[i] is not None:
                workers[i].kill()

        def step(i, **req):
            if results[i] is None:
                try:
                    return workers[i].request(**req)
                except WorkerError as e:
                    fail(i, e)
            return None

        def start(i):
            workers[i] = Worker(params_list[i].timeout_s, tmp)
            step(i, cmd="load", path=str(Path(paths[i]).resolve()), params=dataclasses.asdict(params_list[i]),
                 inputs=inputs_npz)
            step(i, cmd="warmup")

        def finish(i):
            reply = step(i, cmd="accuracy", data=data_npz) if data_npz else None
            got = step(i, cmd="result", target="host")
            if got is not None:
                res = BenchResult.from_dict(got["result"])
                res.model = str(paths[i])
                if reply is not None:
                    res.accuracy, res.confusion = reply["accuracy"], reply["confusion"]
                    res.extra["data"] = data.name
                results[i] = res
            workers[i].close()

        try:
            if interleave and n > 1:
                for i in range(n):
                    start(i)
                rounds = min(effective_rounds(p) for p in params_list)
                for _ in range(rounds):
                    for i in range(n):
                        runs, min_s, max_s = round_quota(params_list[i], rounds)
                        step(i, cmd="round", runs=runs, min_secs=min_s, max_secs=max_s)
                for i in range(n):
                    finish(i)
            else:
                for i in range(n):
                    start(i)
                    p = params_list[i]
                    step(i, cmd="round", runs=p.num_runs, min_secs=p.min_secs, max_secs=p.max_secs)
                    finish(i)
        finally:
            for w in workers:
                if w is not None:
                    w.kill()
                    w.close()
    return results


def run_tflm(paths, params_list: list[BenchParams], *, data: Dataset | None = None) -> list[BenchResult]:
    """The microcontroller target: each model through TFLM in its own child (see `device_bench.tflm`)."""
    out = []
    with tempfile.TemporaryDirectory(prefix="device_bench.") as tmp:
        data_npz = write_data_npz(data, tmp) if data is not None and data.y is not None else None
        for path, params in zip(paths, params_list):
            w = Worker(params.timeout_s, tmp)
            try:
                reply = w.request(cmd="tflm", path=str(Path(path).resolve()), params=dataclasses.asdict(params),
                                  data=data_npz)
                res = BenchResult.from_dict(reply["result"])
                res.model = str(path)
                if data_npz and res.error is None:
                    res.extra["data"] = data.name
                out.append(res)
            except WorkerError as e:
                out.append(error_result(path, params, str(e), target="tflm"))
            finally:
                w.kill()
                w.close()
    return out
