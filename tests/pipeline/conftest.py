"""Fixtures of the pipeline tests: a tiny CNN trained a few steps and a few hundred real Fashion-MNIST images."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

N_IMAGES = 320
FAST_FLAGS = ["--finetune-epochs", "1", "--batch-size", "64", "--calib-samples", "64", "--num-runs", "5",
              "--min-secs", "0.05", "--arm", "none", "--no-progress"]


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """(model.keras, data.npz): 3 small convs + Dense, trained 30 steps on real Fashion-MNIST, seeded."""
    import keras

    from edge_lowrank.data import load_fashion_mnist

    folder = tmp_path_factory.mktemp("tiny")
    test = load_fashion_mnist("test")
    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(len(test), N_IMAGES, replace=False))
    npz = folder / "fmnist_slice.npz"
    np.savez(npz, x=(test.x[idx, ..., 0] * 255).round().astype(np.uint8), y=test.y[idx])

    keras.utils.set_random_seed(0)
    inp = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inp)
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(10, activation="softmax")(x)
    model = keras.Model(inp, out, name="tiny")
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    train = load_fashion_mnist("train")
    model.fit(train.x[:1920], train.y[:1920], batch_size=64, epochs=1, verbose=0)
    path = folder / "tiny.keras"
    model.save(path)
    return path, npz


@pytest.fixture(scope="session")
def fast_flags():
    return list(FAST_FLAGS)


@pytest.fixture(scope="session")
def cli_subprocess():
    return run_cli_subprocess


def run_cli_subprocess(args, **kw):
    """`python -m edge_lowrank ARGS` in a child process, as a CI job would call it."""
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONHASHSEED": "0"}
    return subprocess.Popen([sys.executable, "-m", "edge_lowrank", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.fixture(scope="session")
def full_run(tiny, tmp_path_factory):
    """One uninterrupted run of two schemes on the tiny model: (out folder, exit code, stdout, stderr)."""
    import contextlib
    import io

    from edge_lowrank.cli.main import main

    model, npz = tiny
    out = tmp_path_factory.mktemp("run") / "out"
    so, se = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(so), contextlib.redirect_stderr(se):
        rc = main(["run", str(model), "--data", str(npz), "--out", str(out), "--schemes", "channel,spatial",
                   *FAST_FLAGS])
    return Path(out), rc, so.getvalue(), se.getvalue()
