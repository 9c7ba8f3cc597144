"""The committed sample models: they load, meet the issue's architecture requirements, and score their card."""

import json
import subprocess
import sys

import numpy as np
import pytest

from sample_models import DEFAULT_MODEL, SAMPLE_MODELS, card_path, load_card, sample_model_path

CARD_KEYS = {"name", "description", "test_accuracy", "params", "macs", "input_shape", "epochs", "batch_size",
             "seed", "train_seconds", "command", "keras_version", "tensorflow_version"}
ACCURACY_TOLERANCE = 0.002  # 0.2 percentage points
MIN_ACCURACY = {"resnet_fmnist": 0.925, "vgg_fmnist": 0.915}


@pytest.fixture(scope="module")
def models():
    from edge_lowrank.modelio import load_keras_model

    return {name: load_keras_model(sample_model_path(name)) for name in SAMPLE_MODELS}


@pytest.fixture(scope="module")
def test_set():
    from device_bench.datasets import load_fashion_mnist

    return load_fashion_mnist("test")


def _of_class(model, class_name):
    return [layer for layer in model.layers if type(layer).__name__ == class_name]


def test_package_api():
    assert SAMPLE_MODELS == ("resnet_fmnist", "vgg_fmnist")
    assert DEFAULT_MODEL in SAMPLE_MODELS
    for name in SAMPLE_MODELS:
        assert sample_model_path(name).is_file()
        assert sample_model_path(name).suffix == ".keras"
        assert card_path(name).is_file()
    with pytest.raises(ValueError, match="Received: name='lenet'"):
        sample_model_path("lenet")


def test_import_does_not_load_tensorflow(repo_root):
    code = ("import sys, sample_models; sample_models.load_card(); "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=repo_root).stdout
    assert out.split() == ["False", "False"]


@pytest.mark.parametrize("name", SAMPLE_MODELS)
def test_card(name):
    card = load_card(name)
    assert CARD_KEYS <= set(card)
    assert card["name"] == name
    assert card["input_shape"] == [28, 28, 1]
    assert card["test_images"] == 10000
    assert card["test_accuracy"] >= MIN_ACCURACY[name]
    assert f"sample_models.train {name}" in card["command"]
    assert card == json.loads(card_path(name).read_text())


@pytest.mark.parametrize("name", SAMPLE_MODELS)
def test_counts_match_card(models, name):
    from edge_lowrank.profile import profile_model

    model, card = models[name], load_card(name)
    assert model.input_shape == (None, 28, 28, 1)  # flexible batch; exporters rebuild with batch 1
    assert model.output_shape == (None, 10)
    assert model.count_params() == card["params"]
    assert profile_model(model).macs == card["macs"]
    assert 10_000_000 <= card["macs"] < 100_000_000  # tens of millions of MACs per image
    assert model.layers[-1].get_config()["activation"] == "softmax"


def test_resnet_architecture(models):
    model = models["resnet_fmnist"]
    convs = _of_class(model, "Conv2D")
    convs3 = [c for c in convs if c.kernel_size == (3, 3)]
    convs1 = [c for c in convs if c.kernel_size == (1, 1)]
    assert convs1, "1x1 projection shortcuts expected"
    assert sum(c.filters >= 64 for c in convs3) > len(convs3) / 2
    assert any(c.strides == (2, 2) for c in convs3)
    assert len(_of_class(model, "Add")) >= 2
    assert len(_of_class(model, "BatchNormalization")) >= len(convs)
    assert _of_class(model, "GlobalAveragePooling2D")
    assert model.get_layer("stage1_block1_conv1").strides == (2, 2)


def test_vgg_architecture(models):
    model = models["vgg_fmnist"]
    names = [layer.name for layer in model.layers]
    flatten = _of_class(model, "Flatten")
    assert len(flatten) == 1
    after = model.layers[names.index(flatten[0].name) + 1:]
    dense_after = [layer for layer in after if type(layer).__name__ == "Dense"]
    assert dense_after[0].units >= 512
    assert dense_after[0].kernel.shape[0] >= 4096  # a large weight matrix: where weight SVD matters
    assert all(c.kernel_size == (3, 3) for c in _of_class(model, "Conv2D"))


@pytest.mark.parametrize("name", SAMPLE_MODELS)
def test_accuracy_matches_card(models, test_set, name):
    probs = models[name].predict(test_set.x, batch_size=500, verbose=0)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-4)
    accuracy = float(np.mean(np.argmax(probs, axis=-1) == test_set.y))
    assert len(test_set) == 10000
    assert abs(accuracy - load_card(name)["test_accuracy"]) <= ACCURACY_TOLERANCE


def test_augment_keeps_shape_and_range():
    from sample_models.train import augment

    x = np.random.default_rng(0).random((64, 28, 28, 1), dtype=np.float32)
    y = augment(x, np.random.default_rng(1))
    assert y.shape == x.shape and y.dtype == np.float32
    assert 0.0 <= y.min() and y.max() <= 1.0
    assert np.array_equal(augment(x, np.random.default_rng(1)), y)  # seeded
    flips_only = augment(x, np.random.default_rng(2), max_shift=0)
    same = np.all(flips_only == x, axis=(1, 2, 3))
    mirrored = np.all(flips_only == x[:, :, ::-1], axis=(1, 2, 3))
    assert np.all(same | mirrored) and same.any() and mirrored.any()
