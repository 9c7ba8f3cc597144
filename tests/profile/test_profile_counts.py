"""Parameter and MAC counts from the model's own graph, against hand-computed figures and the .tflite.

Every expected MAC count below is written out as positions x kernel volume x output channels, so a wrong
walk (stale Sequential build nodes, a nested model called twice, a shared layer) shows as a mismatch.
"""

import json
import importlib.util
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from edge_lowrank.cli.main import main
from edge_lowrank.errors import ModelError
from edge_lowrank.profile import layer_macs, profile_model

# Sequential MNIST-style CNN: 28x28x1 -> Conv 32 (3x3 valid) -> Conv 64 -> MaxPool 2 -> Dense 128 -> Dense 10.
MNIST_MACS = (26 * 26 * (3 * 3 * 1) * 32 + 24 * 24 * (3 * 3 * 32) * 64 + (12 * 12 * 64) * 128 + 128 * 10)
MNIST_PARAMS = (9 * 32 + 32) + (288 * 64 + 64) + (9216 * 128 + 128) + (128 * 10 + 10)


def _mnist_sequential():
    import keras

    L = keras.layers
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(32, 3, activation="relu", name="c1"),
                             L.Conv2D(64, 3, activation="relu", name="c2"), L.MaxPooling2D(name="pool"),
                             L.Flatten(name="flat"), L.Dense(128, activation="relu", name="d1"),
                             L.Dense(10, name="d2")], name="mnist")


def test_hand_computed_sequential_counts():
    prof = profile_model(_mnist_sequential())
    assert MNIST_MACS == 11_992_448
    assert (prof.macs, prof.params) == (MNIST_MACS, MNIST_PARAMS)
    rows = {r.name: (r.class_name, r.params, r.macs) for r in prof.layers}
    assert rows["c2"] == ("Conv2D", 288 * 64 + 64, 24 * 24 * 288 * 64)
    assert rows["d1"] == ("Dense", 9216 * 128 + 128, 9216 * 128)
    assert rows["pool"] == ("MaxPooling2D", 0, 0)


def test_sequential_saved_and_reloaded_counts_each_call_once(tmp_path):
    import keras

    model = _mnist_sequential()
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    loaded.predict(np.zeros((2, 28, 28, 1), np.float32), verbose=0)  # calls add nodes too
    conv = loaded.layers[0]
    assert len(conv._inbound_nodes) >= 3  # stale build nodes: the trap this count must not fall into
    prof = profile_model(loaded)
    assert (prof.macs, prof.params) == (MNIST_MACS, MNIST_PARAMS)
    assert layer_macs(conv) == 26 * 26 * 9 * 32  # one call, not one per stale node
    assert not prof.variable_shape


# A Keras 2 (tf_keras) CIFAR-style Sequential saved as legacy .h5, with Conv -> ReLU -> BN ordering.
LEGACY_MACS = 32 * 32 * 27 * 32 + 30 * 30 * (9 * 32) * 32 + (15 * 15 * 32) * 64 + 64 * 10
LEGACY_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import tf_keras as k
    L = k.layers
    m = k.Sequential([L.Conv2D(32, 3, padding="same", input_shape=(32, 32, 3)), L.ReLU(),
                      L.BatchNormalization(), L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(),
                      L.Flatten(), L.Dense(64, activation="relu"), L.Dense(10, activation="softmax")])
    m.compile("adam", "sparse_categorical_crossentropy")
    m.fit(np.zeros((4, 32, 32, 3)), np.zeros(4), epochs=1, verbose=0)
    m.save(sys.argv[1])
""")


@pytest.fixture(scope="module")
def legacy_h5(tmp_path_factory):
    """Made in a child process: importing tf_keras here would flip TF_USE_LEGACY_KERAS for the session."""
    if importlib.util.find_spec("tf_keras") is None:  # look, do not import
        pytest.skip("tf_keras is not installed")
    path = tmp_path_factory.mktemp("legacy") / "cifar_cnn.h5"
    proc = subprocess.run([sys.executable, "-c", LEGACY_SCRIPT, str(path)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return path


def test_legacy_h5_sequential_counts_and_info(legacy_h5, capsys):
    from edge_lowrank.modelio import load_keras_model

    model = load_keras_model(legacy_h5)
    assert len(model.layers[0]._inbound_nodes) >= 2  # stale build nodes again
    prof = profile_model(model)
    assert prof.macs == LEGACY_MACS == 9_640_576
    assert prof.params == model.count_params()
    assert main(["info", str(legacy_h5), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["macs"], info["params"]) == (LEGACY_MACS, prof.params)


def _all_layer_types():
    """One of each MAC-doing layer kind, two inputs (2-D image and 1-D sequence)."""
    import keras

    L = keras.layers
    keras.utils.set_random_seed(0)
    img, seq = keras.Input((16, 16, 3), name="img"), keras.Input((20, 4), name="seq")
    x = L.Conv2D(8, 3, padding="same", name="conv")(img)
    x = L.Conv2D(16, 3, groups=2, padding="same", name="grouped")(x)
    x = L.DepthwiseConv2D(3, depth_multiplier=2, strides=2, name="dw")(x)
    x = L.SeparableConv2D(12, 3, depth_multiplier=2, padding="same", name="sep")(x)
    x = L.Conv2DTranspose(6, 3, strides=2, name="up")(x)
    x = L.Dense(5, name="dense4d")(x)
    y = L.Conv1D(7, 3, dilation_rate=2, name="conv1d")(seq)
    y = L.SeparableConv1D(9, 3, name="sep1d")(y)
    y = L.DepthwiseConv1D(3, name="dw1d")(y)
    y = L.Dense(3, name="dense3d")(y)
    return keras.Model([img, seq], [x, y], name="kinds")


KINDS_MACS = {
    "conv": 16 * 16 * (3 * 3 * 3) * 8,
    "grouped": 16 * 16 * (3 * 3 * 8 // 2) * 16,  # each output channel sees cin/groups inputs
    "dw": 7 * 7 * (3 * 3) * (16 * 2),  # (16 - 3) // 2 + 1 = 7; depth multiplier 2
    "sep": 7 * 7 * (3 * 3) * (32 * 2) + 7 * 7 * 64 * 12,  # depthwise (multiplier 2) + pointwise
    "up": 7 * 7 * (3 * 3) * 12 * 6,  # every input position scatters the whole kernel
    "dense4d": 15 * 15 * 6 * 5,  # (7 - 1) * 2 + 3 = 15: positions x in x out
    "conv1d": 16 * (3 * 4) * 7,  # 20 - 2 * (3 - 1) = 16
    "sep1d": 14 * 3 * 7 + 14 * 7 * 9,
    "dw1d": 12 * 3 * 9,
    "dense3d": 12 * 9 * 3,
}


def test_every_layer_kind_matches_hand_count():
    prof = profile_model(_all_layer_types())
    got = {r.name: r.macs for r in prof.layers if r.macs}
    assert got == KINDS_MACS
    assert prof.macs == sum(KINDS_MACS.values()) == 324_390


def _nested_and_shared():
    """An inner model called twice and a Dense shared by two calls (both on 4-D tensors)."""
    import keras

    L = keras.layers
    keras.utils.set_random_seed(0)
    i = keras.Input((8, 8, 4))
    inner = keras.Model(i, L.Conv2D(4, 3, padding="same", name="conv")(i), name="inner")
    x = keras.Input((8, 8, 4))
    y = inner(inner(x))
    shared = L.Dense(4, name="shared")
    a = shared(y)
    b = shared(a)
    return keras.Model(x, L.Add(name="add")([a, b]), name="outer")


NESTED = {"inner/conv": (2 * 8 * 8 * (3 * 3 * 4) * 4, 3 * 3 * 4 * 4 + 4), "shared": (2 * 8 * 8 * 4 * 4, 4 * 4 + 4)}


@pytest.mark.parametrize("reload", [False, True], ids=["built", "reloaded"])
def test_nested_model_called_twice_and_shared_layer(reload, tmp_path):
    import keras

    model = _nested_and_shared()
    if reload:
        model.save(tmp_path / "n.keras")
        model = keras.models.load_model(tmp_path / "n.keras")
    prof = profile_model(model)
    got = {r.name: (r.macs, r.params) for r in prof.layers if r.params or r.macs}
    assert got == NESTED
    assert prof.params == model.count_params()


def _with_keras_ops():
    """keras.ops calls are graph nodes without `built` (a slice) or with MACs (a matmul), not layers."""
    import keras

    keras.utils.set_random_seed(0)
    x, w = keras.Input((8, 8, 3)), keras.Input((4, 5))
    y = keras.layers.Conv2D(4, 3, name="conv")(x)[:, 1:, :, :]  # 6x6x4 -> 5x6x4
    return keras.Model([x, w], keras.ops.matmul(y, w) + 1.0)


def test_keras_ops_in_the_graph():
    prof = profile_model(_with_keras_ops())
    got = {r.class_name: r.macs for r in prof.layers if r.macs}
    assert got == {"Conv2D": 6 * 6 * 27 * 4, "Matmul": 5 * 6 * 4 * 5}


def test_variable_spatial_input_is_flagged(tmp_path, capsys):
    import keras

    x = keras.Input((None, None, 3))
    model = keras.Model(x, keras.layers.Conv2D(4, 3, padding="same")(x))
    prof = profile_model(model)
    assert prof.variable_shape and prof.macs == 27 * 4  # per unit of the unknown size
    model.save(tmp_path / "v.keras")
    assert main(["info", str(tmp_path / "v.keras")]) == 0
    assert "note: input size unknown (None)" in capsys.readouterr().out


def test_info_on_a_reloaded_sequential(tmp_path, capsys):
    _mnist_sequential().save(tmp_path / "m.keras")
    assert main(["info", str(tmp_path / "m.keras")]) == 0
    assert f"{MNIST_PARAMS:,} parameters, 12.0 M MACs per image" in capsys.readouterr().out


def test_bad_inputs_raise_one_line_errors():
    import keras

    with pytest.raises(ModelError, match="Expected a Keras model"):
        profile_model("model.keras")
    with pytest.raises(ModelError, match="not built"):
        profile_model(keras.Sequential([keras.layers.Dense(3)]))


@pytest.mark.parametrize("make", [_mnist_sequential, _all_layer_types, _nested_and_shared, _with_keras_ops],
                         ids=["sequential", "kinds", "nested-shared", "keras-ops"])
def test_graph_macs_equal_float32_tflite_macs(make):
    from converters import tflite_macs, to_tflite

    model = make()
    tfl = tflite_macs(to_tflite(model, precision="float32"))
    assert tfl.total == pytest.approx(profile_model(model).macs, rel=0.01)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["MobileNetV2", "ResNet50"])
def test_applications_graph_macs_equal_tflite_macs(arch):
    import keras

    from converters import tflite_macs, to_tflite

    model = getattr(keras.applications, arch)(input_shape=(32, 32, 3), weights=None, classes=10)
    graph = profile_model(model).macs
    tfl = tflite_macs(to_tflite(model, precision="float32")).total
    assert tfl == pytest.approx(graph, rel=0.01)
    assert graph > 1e6
