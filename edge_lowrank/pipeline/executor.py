"""Where a run's stages do their work: in this process (`local`, the default) or as Ray tasks (`ray`).

Why Ray and not a home-made scheduler: a team with tens of models and a few boards already needs retries,
placement by CPU and memory, node failure handling and a dashboard; Ray has them.

The rules both executors keep (docs/ray.md):
- The driver (the `run` process) is the only writer of the run folder and of its stage cache. A Ray task gets
  what it reads (the input model file, the data arrays, a saved student .keras) as bytes and arrays through
  the object store, and returns its result dict plus the bytes of the files it produced (paths relative to
  the run folder); the driver writes them atomically and stores the record. A worker on another machine needs
  no shared file system, and a rerun on either executor skips what finished: the stage keys do not name the
  executor.
- A task seeds itself by stage name, as the local pipeline does (`Pipeline._seed`), so both executors give the
  same variants, MACs and top-1.
- Timing never shares a core with training: the host benchmark and the QEMU counts start only after every
  model and export task finished, each target on its own actor (num_cpus=1, one job at a time).
- A worker killed mid-stage loses nothing: Ray reruns the task (`TASK_RETRIES`); when the retries are spent the
  stage gets an error row like a crashed export, the others finish, and `run` exits 1 after the report.
"""

from __future__ import annotations

import io
import os
import socket
import sys
import tempfile
import time
import warnings
from pathlib import Path

from edge_lowrank.errors import EdgeLowrankError

TASK_CPUS = 1
# Per task: TensorFlow alone is ~0.6 GB RSS, converting ResNet-50 to int8 peaked at 2.4 GB. Ray admits tasks
# on a node only while their requests fit its memory, so this bounds how many share a node; capped at the
# largest node so a small cluster still runs.
TASK_MEMORY = 2 * 1024**3
TASK_RETRIES = 2
# Test hook: the first model task that finds this file absent creates it with its pid, then waits to be killed.
KILL_ONCE_ENV = "EDGE_LOWRANK_TEST_KILL_ONCE"
# What the workers must see as the driver does (determinism, quiet TensorFlow).
FORWARD_ENV = ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS", "OPENBLAS_NUM_THREADS", "PYTHONHASHSEED",
               KILL_ONCE_ENV)
INSTALL_HINT = "pip install 'edge-lowrank[ray]' (Ray 2.60: pip install 'ray[default]>=2.60,<2.61')"


class ExecutorError(EdgeLowrankError):
    """Ray is missing, unreachable, or a worker runs other code than the driver."""


def node_info() -> dict:
    """This process's machine: host name, and the Ray node id when it runs inside Ray."""
    info = {"hostname": socket.gethostname()}
    ray = sys.modules.get("ray")
    if ray is not None and getattr(ray, "is_initialized", lambda: False)():
        try:
            info["ray_node_id"] = ray.get_runtime_context().get_node_id()
        except Exception:  # noqa: BLE001 - a driver between init and shutdown; the host name still says it
            pass
    return info


def make_executor(cfg):
    return RayExecutor(cfg.ray_address) if cfg.executor == "ray" else LocalExecutor()


class LocalExecutor:
    """Today's behaviour: every stage in this process, in order."""

    name = "local"

    def describe(self) -> dict:
        return {"name": self.name, "driver": node_info()}

    def variants(self, pipe, schemes, base):
        return pipe._variants_local(schemes, base)

    def measure(self, pipe, exports):
        return pipe._bench_stage(exports), pipe._arm_stages(exports)

    def close(self) -> None:
        pass


def _one_line(e: BaseException) -> str:
    text = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return f"{type(e).__name__}: {text[0][:240] if text else ''}".rstrip(": ")


class RayExecutor:
    """Model and export stages as Ray tasks (exports of a scheme as soon as its model is saved), then one
    benchmark actor per target."""

    name = "ray"

    def __init__(self, address: str | None):
        try:
            import ray
        except ImportError:
            raise ExecutorError(f"--executor ray needs Ray, which is not installed: {INSTALL_HINT}.") from None
        self.ray = ray
        self.address = address
        self.connected = False
        self.owned = False
        self.nodes = 0
        self.memory = TASK_MEMORY
        self.ran_on: dict[str, dict] = {}
        self.driver = node_info()

    # -- cluster ---------------------------------------------------------------------------------------------
    def _connect(self) -> None:
        if self.connected:
            return
        from device_bench.raycluster import RayUnavailable, connect

        ray = self.ray
        env = {k: os.environ[k] for k in FORWARD_ENV if k in os.environ}
        where = self.address or "a new local Ray"
        try:
            self.owned = connect(ray, self.address, runtime_env={"env_vars": env})
        except RayUnavailable as e:
            raise ExecutorError(str(e)) from None
        self.connected = True
        self.driver = node_info()
        alive = [n for n in ray.nodes() if n.get("Alive")]
        self.nodes = len(alive)
        if not any(n["Resources"].get("CPU", 0) >= TASK_CPUS for n in alive):
            raise ExecutorError(f"The Ray cluster at {where} has no node with {TASK_CPUS} free CPU for a stage.")
        biggest = max(n["Resources"].get("memory", 0) for n in alive)
        self.memory = int(min(TASK_MEMORY, biggest)) if biggest else None

    def describe(self) -> dict:
        return {"name": self.name, "address": self.address or "local", "nodes": self.nodes,
                "driver": self.driver, "stages_ran_on": dict(self.ran_on)}

    def close(self) -> None:
        if self.connected and self.owned:  # a Ray this process joined before the run stays up
            self.ray.shutdown()
        self.connected = False

    def _task(self):
        opts = {"num_cpus": TASK_CPUS, "max_retries": TASK_RETRIES, "retry_exceptions": False}
        if self.memory:
            opts["memory"] = self.memory
        return self.ray.remote(_stage_task).options(**opts)

    def _get(self, ref):
        """(value, None) or (None, one-line failure); a project error raised in the task is raised here."""
        ray = self.ray
        try:
            return ray.get(ref), None
        except ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, EdgeLowrankError):
                raise cause from None
            return None, _one_line(cause) if cause is not None else _one_line(e)
        except ray.exceptions.RayError as e:  # worker or node lost after the retries, out of memory, ...
            return None, f"Ray lost the task after {TASK_RETRIES} retries: {_one_line(e)}"

    # -- model and export stages ------------------------------------------------------------------------------
    def variants(self, pipe, schemes, base):
        from edge_lowrank import __version__

        ray = self.ray
        cfg = pipe.cfg
        lazy: dict = {}

        def connect():  # Ray starts (or is joined) only when a stage has work: a cached rerun needs none
            if not lazy:
                self._connect()
                lazy.update(task=self._task(), shared=ray.put(_shared_inputs(pipe.inp)))

        def submit(kind, args, blob_rel=None, blob=None):
            connect()
            return lazy["task"].remote(kind, cfg, lazy["shared"], args, blob_rel, blob, __version__)

        rows: dict[str, dict] = {}
        exports: dict[str, dict] = {}
        pending: dict = {}

        def submit_exports(row_or_base, scheme):
            plan = pipe._export_plan(base, [] if scheme == "baseline" else [row_or_base])
            blob = None
            for sc, keras_rel, sha, prec, vid, qat in plan:
                if sc != scheme:
                    continue
                skipped = pipe.export_skipped(vid, scheme, prec, keras_rel)
                if skipped is not None:
                    exports[vid] = skipped
                    continue
                name = f"export:{vid}"
                key, started, cached = pipe._stage_begin(name, pipe._export_inputs(prec, sha, qat))
                if cached is not None:
                    exports[vid] = cached
                    continue
                args = {"vid": vid, "scheme": scheme, "precision": prec, "keras_rel": keras_rel, "qat": qat}
                if blob is None:  # the saved model once per scheme, shared by its exports
                    connect()
                    blob = ray.put((pipe.out / keras_rel).read_bytes())
                ref = submit("export", args, keras_rel, blob)
                pending[ref] = ("export", name, key, started, args)

        for s in schemes:  # the long stages first: exports of a scheme follow its model
            name = f"model:{s}"
            key, started, cached = pipe._stage_begin(name, pipe._model_inputs(s))
            if cached is not None:
                rows[s] = cached
                if cached["status"] == "ok":
                    submit_exports(cached, s)
                continue
            ref = submit("model", {"scheme": s})
            pending[ref] = ("model", name, key, started, {"scheme": s})
        submit_exports(base, "baseline")

        try:
            while pending:
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                kind, name, key, started, args = pending.pop(ref)
                out, failure = self._get(ref)
                if out is None:
                    result = _failed_row(kind, args, failure)
                    pipe.crashes.append(f"{name}: {failure}")
                    pipe._stage_end(name, key, started, result, [], 0.0)
                else:
                    result = self._finish(pipe, name, key, started, out)
                if kind == "model":
                    rows[args["scheme"]] = result
                    if result["status"] == "ok":
                        submit_exports(result, args["scheme"])
                else:
                    exports[args["vid"]] = result
        except BaseException:
            for ref in pending:  # a project error or Ctrl-C: no orphan work left on the cluster
                ray.cancel(ref, force=True)
            raise
        scheme_rows = [rows[s] for s in schemes]
        order = [vid for *_, vid, _ in pipe._export_plan(base, scheme_rows)]
        return scheme_rows, {vid: exports[vid] for vid in order}

    def _finish(self, pipe, name, key, started, out):
        """Write a task's files into the run folder (atomically), log its lines, record the stage."""
        from edge_lowrank.fileio import atomic_write_bytes

        root = pipe.out.resolve()
        paths = []
        for rel, data in out["files"].items():
            path = (pipe.out / rel).resolve()
            if root not in path.parents:  # a task names files inside the run folder only
                raise ExecutorError(f"{name}: a Ray task returned a file outside the run folder: {rel}")
            atomic_write_bytes(path, data)
            paths.append(path)
        result = out["result"]
        if isinstance(result, dict) and result.get("error") and name.startswith("export:"):
            for rel in (f"tflite/{result['id']}.tflite", f"c/{result['id']}.cc", f"c/{result['id']}.h"):
                (pipe.out / rel).unlink(missing_ok=True)  # as the local executor: no stale file of a failed export
        for line in out["log"]:
            pipe.progress.log(line)
        for msg in out["notes"]:
            pipe.progress.log(f"  {name}: {msg}")
        pipe.crashes.extend(out["crashes"])
        self.ran_on[name] = out["node"]
        return pipe._stage_end(name, key, started, result, paths, out["seconds"])

    # -- measurements ----------------------------------------------------------------------------------------
    def measure(self, pipe, exports):
        """Host timing on one actor, then the QEMU counts, one actor per profile; every model/export task has
        finished by now, so no training shares a core with the timing."""
        ray = self.ray
        actor_cls = ray.remote(_BenchActor).options(num_cpus=1, max_concurrency=1)

        bench = {}
        if pipe.host_bench_wanted():
            params, inputs = pipe._bench_inputs(exports)
            key, started, bench = pipe._stage_begin("bench:host", inputs)
        if bench is None:
            timed = {v: e for v, e in exports.items() if e.get("tflite")}
            blobs = {e["tflite"]: (pipe.out / e["tflite"]).read_bytes() for e in timed.values()}
            self._connect()
            actor = actor_cls.remote()
            out, failure = self._get(actor.host.remote(pipe.cfg, blobs, timed, params))
            ray.kill(actor)
            if out is None:
                pipe.progress.log(f"  bench:host: {failure}")
                pipe.progress.finish("bench:host", started, cached=False, failed=failure)
                bench = {}
            else:
                bench = pipe._stage_end("bench:host", key, started, out["result"], [], out["seconds"])

        arm: dict = {}
        actors: dict = {}
        pending: dict = {}
        for name, inputs, p, v, e, prm in pipe._arm_jobs(exports):
            key, started, cached = pipe._stage_begin(name, inputs)
            if cached is not None:
                arm[(p, v)] = cached
                continue
            if p not in actors:  # one board (here: one emulated profile) = one actor = one job at a time
                self._connect()
                actors[p] = actor_cls.remote()
            ref = actors[p].arm.remote(pipe.cfg, p, e, (pipe.out / e["tflite"]).read_bytes(), prm)
            pending[ref] = (name, key, started, p, v)
        try:
            while pending:
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                name, key, started, p, v = pending.pop(ref)
                out, failure = self._get(ref)
                result = {"instructions": None, "error": failure} if out is None else out["result"]
                arm[(p, v)] = pipe._stage_end(name, key, started, result, [], out["seconds"] if out else 0.0)
        finally:
            for a in actors.values():
                ray.kill(a)
        return bench, arm


def _failed_row(kind: str, args: dict, failure: str) -> dict:
    if kind == "model":
        return {"scheme": args["scheme"], "status": "error", "message": failure, "rewrite": None, "finetune": None,
                "keras": None, "keras_sha256": None}
    return {"id": args["vid"], "scheme": args["scheme"], "precision": args["precision"], "keras": args["keras_rel"],
            "tflite": None, "size_bytes": None, "error": failure, "crashed": True}


# -- what runs in the workers ---------------------------------------------------------------------------------
def _shared_inputs(inp) -> dict:
    """What every task reads, put in the object store once: the input model's bytes, not its path."""
    path = Path(inp.model_path)
    if not path.is_file():
        raise ExecutorError(f"--executor ray sends the model file to the workers; {path} is not a file.")
    return {"model_name": path.name, "model_bytes": path.read_bytes(), "model_path": str(path),
            "model_sha": inp.model_sha, "test": inp.test, "train": inp.train, "calib": inp.calib,
            "fingerprints": inp.fingerprints, "data_info": inp.data_info, "transform": inp.transform}


_WORKER_MODELS: dict = {}  # model sha -> loaded Keras model: a reused worker loads the input model once


def _worker_inputs(shared: dict):
    """`Inputs` rebuilt in a worker: the model loaded from its bytes, writable copies of the arrays (the
    object store hands out read-only views)."""
    import copy

    from edge_lowrank.modelio import load_keras_model
    from edge_lowrank.pipeline.stages import Inputs

    sha = shared["model_sha"]
    if sha not in _WORKER_MODELS:
        folder = Path(tempfile.mkdtemp(prefix="edge-lowrank-model-"))
        path = folder / shared["model_name"]
        path.write_bytes(shared["model_bytes"])
        _WORKER_MODELS[sha] = load_keras_model(path)
    data = {k: copy.deepcopy(shared[k]) for k in ("test", "train", "calib")}
    return Inputs(Path(shared["model_path"]), sha, _WORKER_MODELS[sha], data["test"], data["train"], data["calib"],
                  shared["fingerprints"], shared["data_info"], shared["transform"])


def _kill_hook() -> None:
    marker = os.environ.get(KILL_ONCE_ENV)
    if not marker:
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(fd, f"{os.getpid()}\n".encode())
    os.close(fd)
    time.sleep(600)  # the test kills this process here


def _stage_task(kind: str, cfg, shared: dict, args: dict, blob_rel: str | None, blob: bytes | None,
                driver_version: str) -> dict:
    """One model or export stage in a Ray worker, in a private temporary run folder; returns the result, the
    files it produced as bytes (relative paths), its log lines and project notes, and where it ran."""
    import logging

    from edge_lowrank import __version__
    from edge_lowrank.pipeline import stages
    from edge_lowrank.pipeline.progress import StageProgress

    if __version__ != driver_version:  # the stage keys name the tool version: results must come from it
        raise ExecutorError(f"worker {socket.gethostname()} runs edge-lowrank {__version__}, the driver "
                            f"{driver_version}; install the same version on every node.")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    t0 = time.monotonic()
    inp = _worker_inputs(shared)
    if kind == "model":
        _kill_hook()
    log = io.StringIO()
    with tempfile.TemporaryDirectory(prefix="edge-lowrank-task-") as tmp:
        out = Path(tmp)
        if blob_rel is not None:
            (out / blob_rel).parent.mkdir(parents=True, exist_ok=True)
            (out / blob_rel).write_bytes(blob)
        pipe = stages.Pipeline(cfg, progress=StageProgress(enabled=False, stream=log))
        pipe.out, pipe.inp = out, inp
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            warnings.simplefilter("always", UserWarning)
            if kind == "model":
                result, files = pipe._make_model(args["scheme"])
            else:
                result, files = pipe._export(args["vid"], args["scheme"], args["precision"], args["keras_rel"],
                                             args["qat"])
        from edge_lowrank import debuglog

        notes = [str(w.message).splitlines()[0][:240] for w in caught
                 if debuglog.is_ours(w.filename) and issubclass(w.category, UserWarning) and str(w.message).strip()]
        produced = {Path(f).relative_to(out).as_posix(): Path(f).read_bytes() for f in files}
    return {"result": stages._jsonable(result), "files": produced, "log": log.getvalue().splitlines(),
            "notes": list(dict.fromkeys(notes)), "crashes": list(pipe.crashes), "node": node_info(),
            "seconds": round(time.monotonic() - t0, 3)}


class _BenchActor:
    """One benchmark target (the host's LiteRT, or one QEMU profile): one job at a time, on its own CPU; it
    does not import TensorFlow."""

    def _pipe(self, cfg, out):
        from edge_lowrank.pipeline.progress import StageProgress
        from edge_lowrank.pipeline.stages import Pipeline

        pipe = Pipeline(cfg, progress=StageProgress(enabled=False, stream=io.StringIO()))
        pipe.out = out
        return pipe

    def host(self, cfg, blobs: dict, exports: dict, params) -> dict:
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="edge-lowrank-bench-") as tmp:
            for rel, data in blobs.items():
                (Path(tmp) / rel).parent.mkdir(parents=True, exist_ok=True)
                (Path(tmp) / rel).write_bytes(data)
            result, _ = self._pipe(cfg, Path(tmp))._bench(exports, params)
        return {"result": result, "seconds": round(time.monotonic() - t0, 3)}

    def arm(self, cfg, profile: str, export: dict, data: bytes, params) -> dict:
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="edge-lowrank-arm-") as tmp:
            path = Path(tmp) / export["tflite"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            result, _ = self._pipe(cfg, Path(tmp))._arm(profile, export, params)
        return {"result": result, "seconds": round(time.monotonic() - t0, 3)}
