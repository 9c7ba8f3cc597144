"""Small seeded Keras models with the sample models' layer kinds, and their conversions cached per session."""

from __future__ import annotations

import pytest

CALIB_N = 64


def _resnet_like(seed: int = 0):
    """Conv 3x3 + BN + ReLU, a 1x1 residual Add, a stride-2 conv, GAP, Dense softmax (the ResNet's kinds)."""
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False)(inp)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    y = keras.layers.Conv2D(16, 1, padding="same", activation="relu")(x)
    x = keras.layers.Add()([x, y])
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(10, activation="softmax")(x)
    return keras.Model(inp, out, name="tiny_resnet")


def _vgg_like(seed: int = 0):
    """Flatten -> Dense 256 -> Dense 10 softmax (the VGG sample's head): weights dominate the file."""
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((28, 28, 1))
    x = keras.layers.Flatten()(inp)
    x = keras.layers.Dense(256, activation="relu")(x)
    out = keras.layers.Dense(10, activation="softmax")(x)
    return keras.Model(inp, out, name="tiny_vgg")


@pytest.fixture(scope="session")
def calib():
    from edge_lowrank.data import load_dataset

    return load_dataset("fashion-mnist:calib").x[:CALIB_N]


@pytest.fixture(scope="session")
def test_data():
    from edge_lowrank.data import load_dataset

    return load_dataset("fashion-mnist:test").take(200)


@pytest.fixture(scope="session")
def tiny_resnet():
    return _resnet_like()


@pytest.fixture(scope="session")
def tiny_vgg():
    return _vgg_like()


@pytest.fixture(scope="session")
def converted(tiny_resnet, tiny_vgg, calib):
    """converted(model_name, precision) -> bytes, each conversion done once per session."""
    from converters import to_tflite

    models = {"resnet": tiny_resnet, "vgg": tiny_vgg}
    cache = {}

    def get(name: str, precision: str) -> bytes:
        if (name, precision) not in cache:
            cache[name, precision] = to_tflite(models[name], precision=precision,
                                               representative_data=calib if precision == "int8" else None)
        return cache[name, precision]

    return get


@pytest.fixture(scope="session")
def fixtures_dir(repo_root):
    return repo_root / "tests" / "fixtures"
