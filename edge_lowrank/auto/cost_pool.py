"""`auto`'s micro-model timing spread over a pool of Ray actors on the nodes whose CPU is this process's.

Why: a cold cost table for ResNet-50 at 112 px timed about 400 micro models; a team with several machines of
one kind can time them side by side. One actor per node (two on one machine would disturb each other's
timing), only on nodes whose fingerprint (CPU model, LiteRT version) equals this process's: the figures go
into this process's table, which is keyed by that fingerprint, so they stay comparable. A node of another CPU
kind is left out; when a run there needs a table it builds its own (the cache is per fingerprint). The micro
models are still converted here (the builders are Keras closures); the actors only time them.

Opt-in, for the process that builds the table: `EDGE_LOWRANK_COST_POOL=ray` (a Ray started on this machine)
or `EDGE_LOWRANK_COST_POOL=HOST:PORT` (a cluster), e.g. once per CPU kind before the runs:
`EDGE_LOWRANK_COST_POOL=head:6379 edge-lowrank compress model.keras --scheme auto --calib-data ... -o OUT.keras`.
Ignored inside a Ray task: a task holding a CPU while waiting for actors that need one can deadlock the
cluster (so `run --executor ray` measures in the task, see docs/ray.md).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

from edge_lowrank.errors import EdgeLowrankError

ENV = "EDGE_LOWRANK_COST_POOL"


def fingerprint() -> dict:
    from device_bench._interpreter import runtime_version
    from device_bench.sysinfo import cpu_model

    return {"cpu": cpu_model(), "runtime": runtime_version()}


def matching(fingerprints: dict, mine: dict) -> list:
    """The node ids whose fingerprint is `mine`, in a stable order."""
    return sorted(n for n, f in fingerprints.items() if f == mine)


class _Timer:
    """One node's timer: writes the micro models to a temporary folder and times them interleaved."""

    def fingerprint(self) -> dict:
        return fingerprint()

    def time(self, blobs: list, num_threads: int) -> list:
        from device_bench.costs import time_models

        with tempfile.TemporaryDirectory(prefix="edge-lowrank-costpool-") as tmp:
            paths = []
            for i, b in enumerate(blobs):
                paths.append(os.path.join(tmp, f"op{i}.tflite"))
                Path(paths[-1]).write_bytes(b)
            return time_models(paths, num_threads=num_threads)


class CostPool:
    """Timer actors on every node of this process's CPU kind (`nodes`, `skipped` name them)."""

    def __init__(self, address: str | None = None):
        from device_bench.raycluster import RayUnavailable, connect, import_ray

        try:
            ray = import_ray("pip install 'edge-lowrank[ray]'")
            self.started = connect(ray, address)
        except RayUnavailable as e:
            raise EdgeLowrankError(f"{ENV}: {e}") from None
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.ray = ray
        timer = ray.remote(_Timer)
        probes = {}
        for n in ray.nodes():
            if n.get("Alive") and n["Resources"].get("CPU", 0) >= 1:
                strategy = NodeAffinitySchedulingStrategy(node_id=n["NodeID"], soft=False)
                probes[n["NodeID"]] = timer.options(num_cpus=1, max_concurrency=1,
                                                    scheduling_strategy=strategy).remote()
        prints = dict(zip(probes, ray.get([a.fingerprint.remote() for a in probes.values()])))
        mine = fingerprint()
        self.nodes = matching(prints, mine)
        self.skipped = {n: f for n, f in prints.items() if n not in self.nodes}
        for n in self.skipped:
            ray.kill(probes[n])
        self.actors = [probes[n] for n in self.nodes]
        if not self.actors:
            self.close()
            raise EdgeLowrankError(f"{ENV}: no node of the cluster has this machine's CPU ({mine['cpu']}); "
                                   f"build the table without the pool.")

    def time(self, blobs: list, num_threads: int = 1) -> list:
        """Microseconds per micro model, in the order of `blobs`: model i is timed on actor i % len(actors)."""
        k = len(self.actors)
        refs = [a.time.remote(blobs[i::k], num_threads) for i, a in enumerate(self.actors) if blobs[i::k]]
        shares = self.ray.get(refs)
        out = [0.0] * len(blobs)
        for i, share in enumerate(shares):
            out[i::k] = share
        return [float(v) for v in out]

    def close(self) -> None:
        for a in getattr(self, "actors", []):
            self.ray.kill(a)
        self.actors = []
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()


_POOL: list = []  # the process's pool, made on first use


def from_env() -> CostPool | None:
    """The pool `EDGE_LOWRANK_COST_POOL` asks for (made once per process), or None (unset, or in a Ray task)."""
    spec = os.environ.get(ENV, "").strip()
    if not spec:
        return None
    if _POOL:
        return _POOL[0]
    try:
        import ray
        from ray._private.worker import global_worker

        if ray.is_initialized() and global_worker.mode == ray.WORKER_MODE:
            warnings.warn(f"{ENV} is ignored inside a Ray task (it could deadlock the cluster); timing here")
            return None
    except ImportError:
        pass
    _POOL.append(CostPool(None if spec == "ray" else spec))
    return _POOL[0]
