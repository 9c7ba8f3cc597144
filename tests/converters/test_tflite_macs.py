"""MACs recounted from a .tflite's own ops (converters.tflite_macs), against hand counts and the Keras graph."""

import json

import numpy as np
import pytest

from converters import tflite_macs, to_tflite
from edge_lowrank.cli.main import main
from edge_lowrank.errors import ModelError
from edge_lowrank.profile import profile_model

# 12x12x3 -> Conv 8 (3x3, stride 2, same) -> Depthwise 3x3 -> ConvTranspose 4 (2x2, stride 2) -> GAP -> Dense 10
HAND = {
    "CONV_2D": 6 * 6 * (3 * 3 * 3) * 8,
    "TRANSPOSE_CONV": 6 * 6 * (2 * 2 * 8 * 4),  # input positions x the whole kernel
    "DEPTHWISE_CONV_2D": 6 * 6 * (3 * 3) * 8,
    "FULLY_CONNECTED": 4 * 10,
}


@pytest.fixture(scope="module")
def small():
    import keras

    L = keras.layers
    keras.utils.set_random_seed(0)
    x = keras.Input((12, 12, 3))
    y = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    y = L.DepthwiseConv2D(3, padding="same")(y)
    y = L.Conv2DTranspose(4, 2, strides=2)(y)
    y = L.GlobalAveragePooling2D()(y)
    return keras.Model(x, L.Dense(10)(y))


@pytest.fixture(scope="module")
def small_fp32(small, tmp_path_factory):
    path = tmp_path_factory.mktemp("macs") / "small.tflite"
    path.write_bytes(to_tflite(small, precision="float32"))
    return path


def test_hand_counted_ops_and_graph_agree(small, small_fp32):
    m = tflite_macs(small_fp32)  # a path works as well as bytes
    assert m.by_type() == HAND
    assert m.total == sum(HAND.values()) == 15_016 == profile_model(small).macs
    assert [o.op for o in m.ops] == ["CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "FULLY_CONNECTED"]
    assert m.ops[0].output_shape == (1, 6, 6, 8)
    assert not m.variable_shape


def test_int8_counts_the_same_macs(small):
    calib = np.random.default_rng(0).random((16, 12, 12, 3), np.float32)
    assert tflite_macs(to_tflite(small, precision="int8", representative_data=calib)).total == 15_016


@pytest.mark.parametrize("axes, shapes", [((2, 1), ((6, 8), (8, 5))), ((2, 2), ((6, 8), (5, 8))),
                                          ((1, 1), ((8, 6), (8, 5)))], ids=["plain", "adj-y", "adj-x"])
def test_batch_matmul_from_a_dot_layer(axes, shapes):
    import keras

    a, b = keras.Input(shapes[0]), keras.Input(shapes[1])
    model = keras.Model([a, b], keras.layers.Dot(axes=axes)([a, b]))
    m = tflite_macs(to_tflite(model))
    assert m.by_type() == {"BATCH_MATMUL": 6 * 5 * 8}
    assert profile_model(model).macs == 6 * 5 * 8


def test_3d_convs_and_1d_transposed_conv():
    import keras

    L = keras.layers
    x, s = keras.Input((6, 6, 6, 2)), keras.Input((10, 4))
    y = L.Conv3DTranspose(3, 2, strides=2)(L.Conv3D(4, 3, padding="same")(x))
    model = keras.Model([x, s], [y, L.Conv1DTranspose(5, 3, strides=2)(s)])
    want = {"CONV_3D": 6 ** 3 * (3 ** 3 * 2) * 4, "CONV_3D_TRANSPOSE": 6 ** 3 * (2 ** 3 * 4 * 3),
            "TRANSPOSE_CONV": 10 * (3 * 4 * 5)}  # Conv1DTranspose runs as a 2-D TRANSPOSE_CONV
    assert tflite_macs(to_tflite(model)).by_type() == want
    assert profile_model(model).macs == sum(want.values())


def test_bad_inputs_raise_model_errors(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        tflite_macs(tmp_path / "missing.tflite")
    with pytest.raises(ModelError, match="TFL3"):
        tflite_macs(b"not a flatbuffer at all")
    with pytest.raises(ModelError, match="Expected the bytes"):
        tflite_macs(12)


def test_inspect_prints_macs_in_text_and_json(small_fp32, capsys):
    assert main(["inspect", str(small_fp32)]) == 0
    text = capsys.readouterr().out
    assert ("macs: 15,016 per invocation: CONV_2D 7.8k, TRANSPOSE_CONV 4.6k, DEPTHWISE_CONV_2D 2.6k, "
            "FULLY_CONNECTED 40") in text
    assert main(["inspect", str(small_fp32), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)["macs"]
    assert (d["total"], d["by_type"]) == (15_016, HAND)
    assert len(d["ops"]) == 4
