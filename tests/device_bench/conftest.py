"""Fixtures for device_bench tests: small real .tflite files, built once and cached between runs.

The models are built by `make_models.py` in a subprocess (TensorFlow never enters the pytest process, so the
tests that fork or spawn workers run as they would on a board) and cached in pytest's cache folder under a
hash of that script: the first run takes about 30 s, later ones nothing.
"""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))

from corrupt import make_corrupt_files  # noqa: E402

from device_bench import BenchParams  # noqa: E402

FAST = dict(num_runs=5, min_secs=0.0, warmup_runs=1, warmup_min_secs=0.0, timeout_s=120.0)


def fast_params(**kw) -> BenchParams:
    return BenchParams(**{**FAST, **kw})


def _build(folder: Path, *args) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}
    proc = subprocess.run([sys.executable, str(HERE / "make_models.py"), str(folder), *args], env=env,
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"make_models.py failed:\n{proc.stderr[-3000:]}")


def _cached_dir(request, tag: str) -> Path:
    digest = hashlib.sha256((HERE / "make_models.py").read_bytes()).hexdigest()[:12]
    return Path(request.config.cache.mkdir(f"device_bench_models_{tag}_{digest}"))


@pytest.fixture(scope="session")
def models(request) -> dict:
    """{'f32', 'int8', 'topk': paths, 'fidelity': {...}}: a tiny trained CNN (float32; int8 with int8 I/O)."""
    folder = _cached_dir(request, "tiny")
    if not (folder / "fidelity.json").exists():
        _build(folder)
    fid = json.loads((folder / "fidelity.json").read_text())
    return {"f32": folder / "tiny_f32.tflite", "int8": folder / "tiny_int8.tflite", "topk": folder / "topk.tflite",
            "split": folder / "split.tflite",
            "fidelity": fid["tiny_int8"]}


@pytest.fixture(scope="session")
def sample_int8(request) -> dict:
    """The committed ResNet sample model converted to int8 (skips when sample_models has no .keras yet)."""
    name = "resnet_fmnist"
    if not (REPO / "sample_models" / f"{name}.keras").exists():
        pytest.skip(f"sample_models/{name}.keras is not committed yet")
    folder = _cached_dir(request, name)
    if not (folder / "fidelity.json").exists():
        _build(folder, "--sample", name)
    fid = json.loads((folder / "fidelity.json").read_text())
    return {"int8": folder / f"{name}_int8.tflite", "fidelity": fid[f"{name}_int8"]}


@pytest.fixture(scope="session")
def corrupt_files(models, tmp_path_factory) -> dict:
    return make_corrupt_files(models["int8"], tmp_path_factory.mktemp("corrupt"))
