"""A cost table per op shape: what a layer, or the factor layers a scheme puts in its place, costs on a target.

Each entry is one micro model (the layer alone, or its factor block, on the layer's input shape, random
weights), converted to int8 TFLite by `converters.to_tflite` and timed by `device_bench.costs` (host,
XNNPACK, one thread, interleaved rounds, in a child process without TensorFlow) or counted under QEMU
(`qemu:a76`: instructions per inference). Latency does not depend on the weight values, so the key is the
shape: layer type, kernel, strides, padding, dilation, activation, bias, input shape, scheme and ranks.

The table is a JSON file under the cache folder, one per (target, precision, threads, CPU, LiteRT version,
cost-model version): a second model with the same layer shapes, or a second run, measures nothing again.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edge_lowrank.errors import EdgeLowrankError
from edge_lowrank.fileio import atomic_write_text
from edge_lowrank.paths import cache_dir

COST_MODEL_VERSION = 1
CALIB_SAMPLES = 4


class CostError(EdgeLowrankError, RuntimeError):
    """The cost table could not measure a micro model (converter or runtime failure, bad target)."""


def _fingerprint(target: str, precision: str, num_threads: int) -> dict:
    from device_bench._interpreter import runtime_version
    from device_bench.sysinfo import cpu_model

    where = cpu_model() if target == "host" else target
    return {"target": target, "where": where, "precision": precision, "threads": num_threads,
            "runtime": runtime_version(), "version": COST_MODEL_VERSION}


class CostTable:
    """Measured cost per micro-model key, cached on disk.

    Args:
        target: "host" (microseconds per inference) or "qemu:<profile>" (instructions per inference).
        precision: "int8" (the deployed precision these choices are made for) or "float32".
        num_threads: interpreter threads on the host.
        path: the JSON file; default: `<cache>/op_costs/<fingerprint hash>.json`.
        verbose: print a line per measured batch.
    """

    def __init__(self, target: str = "host", *, precision: str = "int8", num_threads: int = 1, path=None,
                 verbose: bool = False, pool=None):
        if target != "host" and not target.startswith("qemu:"):
            raise CostError(f"Invalid cost target `{target}`. Expected host or qemu:<profile> (e.g. qemu:a76).")
        if precision not in ("int8", "float32"):
            raise CostError(f"Invalid cost precision `{precision}`. Expected int8 or float32.")
        self.target, self.precision, self.num_threads, self.verbose = target, precision, num_threads, verbose
        self.pool = pool  # host timing on Ray actors of this CPU kind (auto/cost_pool.py); else EDGE_LOWRANK_COST_POOL
        self.fingerprint = _fingerprint(target, precision, num_threads)
        digest = hashlib.sha256(json.dumps(self.fingerprint, sort_keys=True).encode()).hexdigest()[:16]
        self.path = Path(path) if path is not None else cache_dir("op_costs") / f"{digest}.json"
        self.unit = "us" if target == "host" else "instructions"
        self.entries: dict[str, float] = {}
        self.measured = 0
        if self.path.is_file():
            try:
                saved = json.loads(self.path.read_text())
                if saved.get("fingerprint") == self.fingerprint:
                    self.entries = {k: float(v) for k, v in saved.get("entries", {}).items()}
            except (OSError, ValueError):  # a torn or foreign file: measure again
                self.entries = {}

    def _save(self) -> None:
        atomic_write_text(self.path, json.dumps({"fingerprint": self.fingerprint, "entries": self.entries},
                                                indent=0, sort_keys=True))

    def lookup(self, items) -> list[float]:
        """Costs of `items`, a list of (key, build) or (key, build, calibration images) where `build()` returns
        the Keras model to measure (random normal calibration by default).

        Missing keys are built, converted and measured together (one interleaved batch), then saved.
        """
        keys = [item[0] for item in items]
        missing = {}
        for k, build, *calib in items:
            if k not in self.entries and k not in missing:
                missing[k] = (build, calib[0] if calib else None)
        if missing:
            self._measure(missing)
        return [self.entries[k] for k in keys]

    def _measure(self, missing: dict) -> None:
        import converters

        rng = np.random.default_rng(0)
        with tempfile.TemporaryDirectory(prefix="edge-lowrank-costs.") as tmp:
            paths = []
            for i, (key, (build, calib)) in enumerate(missing.items()):
                model = build()
                shape = tuple(int(d) for d in model.inputs[0].shape[1:])
                if calib is None:
                    calib = rng.standard_normal((CALIB_SAMPLES,) + shape).astype(np.float32)
                try:
                    flat = converters.to_tflite(model, precision=self.precision, representative_data=calib,
                                                equalize=False)
                except Exception as e:
                    raise CostError(f"Cannot convert the micro model for {key}: {str(e).splitlines()[0]}") from None
                path = os.path.join(tmp, f"op{i}.tflite")
                Path(path).write_bytes(flat)
                paths.append(path)
            if self.verbose:
                print(f"  cost table: measuring {len(paths)} micro models on {self.target}", flush=True)
            values = self._run(paths)
        for key, v in zip(missing, values):
            self.entries[key] = float(v)
        self.measured += len(missing)
        self._save()

    def _run(self, paths) -> list[float]:
        if self.target == "host":
            from edge_lowrank.auto.cost_pool import from_env

            pool = self.pool if self.pool is not None else from_env()
            if pool is not None:
                return pool.time([Path(p).read_bytes() for p in paths], self.num_threads)
            cmd = [sys.executable, "-m", "device_bench.costs", *paths, "--threads", str(self.num_threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                raise CostError(f"Timing the micro models failed: {tail}")
            return json.loads(proc.stdout.strip().splitlines()[-1])["us"]
        from device_bench import BenchParams, bench_models

        params = BenchParams(num_runs=2, min_secs=0.0, warmup_runs=1, warmup_min_secs=0.0, num_threads=1)
        out = []
        for res in bench_models(paths, params, target=self.target):
            if res.instructions_per_inference is None:
                raise CostError(f"Counting the micro models on {self.target} failed: {res.error}")
            out.append(float(res.instructions_per_inference))
        return out


def layer_key(layer, input_shape, has_bias: bool, option) -> str:
    """The shape of what is measured: enough to rebuild the same micro model, nothing about weights."""
    cfg = layer.get_config()
    desc = {
        "class": type(layer).__name__,
        "kernel": [int(d) for d in layer.kernel.shape] if hasattr(layer, "kernel") else
        [int(d) for d in layer.pointwise_kernel.shape],
        "depthwise": [int(d) for d in layer.depthwise_kernel.shape] if hasattr(layer, "depthwise_kernel") else None,
        "strides": list(cfg.get("strides", ())), "padding": cfg.get("padding"),
        "dilation": list(cfg.get("dilation_rate", ())) if isinstance(cfg.get("dilation_rate"), (list, tuple))
        else cfg.get("dilation_rate"),
        "activation": cfg.get("activation"), "bias": bool(has_bias),
        "input": [int(d) for d in input_shape],
        "option": None if option.scheme is None else [option.scheme, list(option.ranks)],
    }
    return json.dumps(desc, sort_keys=True)


def model_key(model) -> str:
    """A whole model's architecture (layer configs and wiring), for its own entry in the table."""
    return "model:" + hashlib.sha256(model.to_json().encode()).hexdigest()
