"""A device farm: several benchmark targets (`ssh://` boards, QEMU profiles, the host) used as one fleet.

Why: a team with a few boards of one kind wants a release's `.tflite` files measured on all of them at once,
not board by board. Each file goes to the next free target, one job per target at a time (a board that runs
two models at once times neither), and one table comes back in the order of the files; every row says which
target (and, on Ray, which node) measured it. Timings from different targets only compare when the targets
are the same kind of board: give a fleet of identical boards, or read the `target` column.

Executors: `local` drives every target from this machine, one thread per target; `ray` makes each target a
Ray actor (`max_concurrency=1`), anywhere in the cluster: host and QEMU targets reserve one CPU (they burn a
core), ssh boards none (the board does the work, the actor only waits). The file goes to the actor as bytes,
so the actor's node needs no copy of it; an ssh key (`--identity`) must exist at the same path there.
No TensorFlow here, like the rest of device_bench.
"""

from __future__ import annotations

import os
import queue
import socket
import tempfile
import threading
from pathlib import Path

from .errors import BenchError
from .results import BenchParams, BenchResult


def parse_fleet(spec: str) -> list[str]:
    """`ssh://pi@a,ssh://pi@b,qemu:cortex-a76` -> the targets; each one listed once."""
    targets = [t.strip() for t in str(spec).split(",") if t.strip()]
    if not targets:
        raise BenchError("Invalid value for --farm: empty. Expected comma-separated targets.")
    if len(set(targets)) != len(targets):
        raise BenchError(f"Invalid value for --farm: a target is listed twice ({spec}); a board runs one job "
                         f"at a time.")
    for t in targets:
        if not (t == "host" or t.startswith(("ssh://", "qemu:"))):
            raise BenchError(f"Invalid farm target `{t}`. Expected host, ssh://user@host[:port] or qemu:<profile>.")
    return targets


def _one(target: str, path: str, params: BenchParams, kw: dict) -> BenchResult:
    from .bench import bench_models

    (r,) = bench_models([path], [params], target=target, interleave=False, **kw)
    return r


def bench_farm(paths, params, targets, *, executor: str = "local", ray_address: str | None = None,
               data=None, inputs: str | None = None, remote_python: str = "python3",
               ssh_identity: str | None = None) -> list[BenchResult]:
    """Benchmark `paths` (one BenchParams each, or one for all) spread over `targets`; results in file order,
    each with `extra["farm"] = {"target": ..., "node": ...}`."""
    from .bench import _params_list, resolve_data

    paths = [str(p) for p in paths]
    if not paths:
        raise BenchError("No model to benchmark: give at least one .tflite file.")
    params_list = _params_list(paths, params)
    dataset = resolve_data(data)
    if inputs is not None and not os.path.isfile(inputs):
        raise BenchError(f"Inputs file {inputs} does not exist.")
    kw = {"data": dataset, "remote_python": remote_python, "ssh_identity": ssh_identity}
    if executor == "ray":
        results = _farm_ray(paths, params_list, targets, ray_address, kw, inputs)
    elif executor == "local":
        results = _farm_local(paths, params_list, targets, {**kw, "inputs": inputs})
    else:
        raise BenchError(f"Invalid value for --executor. Expected local or ray. Received: {executor!r}.")
    for r, path in zip(results, paths):
        r.model = path  # the actor's temporary copy had another path
    return results


def _farm_local(paths, params_list, targets, kw) -> list[BenchResult]:
    jobs: queue.Queue = queue.Queue()
    for i, (p, prm) in enumerate(zip(paths, params_list)):
        jobs.put((i, p, prm))
    results: list = [None] * len(paths)
    errors: list = []

    def worker(target):
        while not errors:
            try:
                i, p, prm = jobs.get_nowait()
            except queue.Empty:
                return
            try:
                r = _one(target, p, prm, kw)
            except BaseException as e:  # noqa: BLE001 - a bad target or data: the whole call fails, once
                errors.append(e)
                return
            r.extra["farm"] = {"target": target, "node": socket.gethostname()}
            results[i] = r

    threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


class _TargetActor:
    """One farm target as a Ray actor: one job at a time (max_concurrency=1)."""

    def __init__(self, target: str, kw: dict, inputs: bytes | None):
        self.target, self.kw = target, kw
        self.tmp = Path(tempfile.mkdtemp(prefix="device-bench-farm-"))
        if inputs is not None:
            (self.tmp / "inputs.npz").write_bytes(inputs)
            self.kw = {**kw, "inputs": str(self.tmp / "inputs.npz")}

    def bench(self, name: str, data: bytes, params: BenchParams) -> BenchResult:
        import ray

        job = Path(tempfile.mkdtemp(dir=self.tmp))
        path = job / name  # the file's own name: it labels the row
        path.write_bytes(data)
        r = _one(self.target, str(path), params, self.kw)
        r.extra["farm"] = {"target": self.target, "node": socket.gethostname(),
                           "ray_node_id": ray.get_runtime_context().get_node_id()}
        path.unlink()
        return r


def _farm_ray(paths, params_list, targets, address, kw, inputs) -> list[BenchResult]:
    from .raycluster import RayUnavailable, connect, import_ray

    try:
        ray = import_ray("pip install 'ray[default]>=2.60,<2.61'")
        started = connect(ray, address)
    except RayUnavailable as e:
        raise BenchError(f"--executor ray: {e}") from None
    try:
        blob = Path(inputs).read_bytes() if inputs else None
        actors = {}
        for t in targets:
            cpus = 0 if t.startswith("ssh://") else 1
            actors[t] = ray.remote(_TargetActor).options(num_cpus=cpus, max_concurrency=1).remote(t, kw, blob)
        todo = list(range(len(paths)))
        free = list(targets)
        pending: dict = {}
        results: list = [None] * len(paths)
        while todo or pending:
            while todo and free:
                i, t = todo.pop(0), free.pop(0)
                ref = actors[t].bench.remote(Path(paths[i]).name, Path(paths[i]).read_bytes(), params_list[i])
                pending[ref] = (i, t)
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            i, t = pending.pop(ref)
            try:
                results[i] = ray.get(ref)
            except ray.exceptions.RayTaskError as e:
                cause = getattr(e, "cause", None)
                raise cause if isinstance(cause, BenchError) else BenchError(
                    f"farm target {t}: {type(cause or e).__name__}: {str(cause or e).splitlines()[0][:200]}") from None
            except ray.exceptions.RayError as e:  # the target's actor or node died: an error row, target dropped
                from .host import error_result

                results[i] = error_result(paths[i], params_list[i], f"farm target {t} lost: {type(e).__name__}",
                                          target=t)
                results[i].extra["farm"] = {"target": t}
                if not free and not pending and todo:
                    raise BenchError(f"every farm target is lost; {len(todo)} file(s) not measured") from None
                continue
            free.append(t)
        for a in actors.values():
            ray.kill(a)
        return results
    finally:
        if started:
            ray.shutdown()
