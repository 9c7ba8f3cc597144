"""to_tflite in four precisions, checked with the real converter and the real LiteRT interpreter."""

import numpy as np
import pytest

import converters
from converters import ConversionError, audit_ops, check_fidelity, to_tflite
from edge_lowrank.errors import DataError

PRECISIONS = ("float32", "float16", "dynamic", "int8")


def test_float32_matches_keras(tiny_resnet, converted, test_data):
    fid = check_fidelity(tiny_resnet, converted("resnet", "float32"), test_data)
    assert fid.n == len(test_data)
    assert fid.max_abs_err < 1e-5
    assert fid.top1_agreement == 1.0
    assert fid.accuracy_keras == fid.accuracy_tflite


@pytest.mark.parametrize("precision", PRECISIONS)
def test_every_precision_is_builtin_and_one_xnnpack_partition(converted, precision):
    audit = audit_ops(converted("resnet", precision))
    assert audit.builtin_only
    assert audit.input_shapes == ((1, 28, 28, 1),)  # static batch 1
    assert audit.xnnpack_partitions == 1
    # int8 SOFTMAX is the documented exception; everything else runs inside the partition.
    assert audit.undelegated_ops == (("SOFTMAX",) if precision == "int8" else ())
    assert audit.unexplained_undelegated == ()


def test_int8_has_int8_io_and_per_channel_weights(converted):
    audit = audit_ops(converted("resnet", "int8"))
    assert audit.input_dtypes == ("int8",) and audit.output_dtypes == ("int8",)
    kernels = [w for w in audit.weights if w.dtype == "int8"]
    assert len(kernels) == 4  # three convs and the dense layer
    assert all(w.quantization.startswith("per-channel") for w in kernels)
    assert "float32" not in {w.dtype for w in audit.weights}


def test_int8_float_io_keeps_float_interface(tiny_resnet, calib, test_data):
    flat = to_tflite(tiny_resnet, precision="int8", representative_data=calib, float_io=True)
    audit = audit_ops(flat)
    assert audit.input_dtypes == ("float32",) and audit.output_dtypes == ("float32",)
    assert {"QUANTIZE", "DEQUANTIZE"} <= set(audit.op_counts)
    fid = check_fidelity(tiny_resnet, flat, test_data)
    assert fid.max_abs_err < 0.05


def test_int8_outputs_are_dequantized_close_to_keras(tiny_resnet, converted, test_data):
    fid = check_fidelity(tiny_resnet, converted("resnet", "int8"), test_data)
    # Softmax outputs in [0, 1], output scale 1/256: errors of a few quantization steps, not raw int8 codes.
    assert fid.max_abs_err < 0.05
    assert fid.max_rel_err < 0.2


def test_dynamic_range_has_int8_weights_and_float_activations(converted):
    audit = audit_ops(converted("vgg", "dynamic"))
    assert audit.input_dtypes == ("float32",)
    assert any(w.dtype == "int8" for w in audit.weights)


def test_float16_is_about_half_of_float32(converted, tiny_vgg, test_data):
    f32, f16 = converted("vgg", "float32"), converted("vgg", "float16")
    assert 0.45 < len(f16) / len(f32) < 0.55
    assert {w.dtype for w in audit_ops(f16).weights if w.nbytes > 1024} == {"float16"}
    fid = check_fidelity(tiny_vgg, f16, test_data)
    assert fid.max_abs_err < 1e-2 and fid.top1_agreement > 0.98


def test_same_inputs_give_byte_identical_flatbuffers(tiny_resnet, calib, converted):
    again = to_tflite(tiny_resnet, precision="int8", representative_data=calib)
    assert again == converted("resnet", "int8")


def test_flexible_batch_model_is_converted_with_batch_one(tiny_vgg, converted):
    assert tiny_vgg.inputs[0].shape[0] is None
    audit = audit_ops(converted("vgg", "float32"))
    assert "SHAPE" not in audit.op_counts and "PACK" not in audit.op_counts
    assert audit.xnnpack_partitions == 1 and audit.undelegated_ops == ()


def test_int8_without_representative_data_names_both(tiny_resnet):
    with pytest.raises(ValueError, match=r"int8.*representative_data"):
        to_tflite(tiny_resnet, precision="int8")


def test_unknown_precision_lists_the_choices(tiny_resnet):
    with pytest.raises(ConversionError, match=r"Expected one of .*float16.*Received: precision='int4'"):
        to_tflite(tiny_resnet, precision="int4")


@pytest.mark.parametrize("bad, match", [
    (np.zeros((0, 28, 28, 1), np.float32), "empty"),
    (np.random.default_rng(0).random((8, 32, 32, 1), dtype=np.float32), r"shape \(32, 32, 1\)"),
    (np.random.default_rng(0).random((8, 28, 28, 1), dtype=np.float32) * 255, "outside the model's input range"),
    (np.full((8, 28, 28, 1), np.nan, np.float32), "NaN"),
    (np.zeros((8, 28, 28, 1), np.float32), "constant"),
])
def test_bad_representative_data_is_refused(tiny_resnet, bad, match):
    with pytest.raises(DataError, match=match):
        to_tflite(tiny_resnet, precision="int8", representative_data=bad, input_range=(0, 1))


def test_not_a_model_is_refused():
    with pytest.raises(ValueError, match="Expected a keras.Model"):
        to_tflite(b"not a model")


def test_public_names_resolve():
    for name in converters.__all__:
        assert getattr(converters, name) is not None


def _run_by_name(flat, feeds):
    """Outputs of a float-I/O .tflite fed by input name (the converter orders inputs by name)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=flat)
    it.allocate_tensors()
    outs = []
    for i in range(len(next(iter(feeds.values())))):
        for d in it.get_input_details():
            key = next(k for k in feeds if k in d["name"])
            it.set_tensor(d["index"], feeds[key][i:i + 1])
        it.invoke()
        outs.append(it.get_tensor(it.get_output_details()[0]["index"])[0])
    return np.array(outs), [tuple(d["shape"]) for d in it.get_input_details()]


def test_int8_calibrates_each_input_of_a_two_input_model():
    import keras

    rng = np.random.default_rng(0)
    img, vec = keras.Input((12, 12, 3), name="image"), keras.Input((6,), name="features")
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3, activation="relu")(img))
    x = keras.layers.Concatenate()([x, keras.layers.Dense(8, activation="relu")(vec)])
    model = keras.Model([img, vec], keras.layers.Dense(4)(x))
    # the two inputs on very different scales: calibrating one with the other's data would show
    data = [rng.random((32, 12, 12, 3), dtype=np.float32), 50 * rng.random((32, 6), dtype=np.float32)]
    flat = to_tflite(model, precision="int8", representative_data=data, float_io=True)
    assert audit_ops(flat).builtin_only
    got, _ = _run_by_name(flat, {"image": data[0][:8], "features": data[1][:8]})
    want = model.predict([d[:8] for d in data], verbose=0)
    assert np.abs(got - want).max() <= 0.03 * np.abs(want).max()
    with pytest.raises(ConversionError, match="2 inputs"):
        to_tflite(model, precision="int8", representative_data=data[0])


def test_int8_fixes_a_variable_input_size_from_the_calibration_images():
    import keras

    inp = keras.Input((None, None, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp))
    model = keras.Model(inp, keras.layers.Dense(4)(x))
    data = np.random.default_rng(1).random((16, 20, 20, 3), dtype=np.float32)
    flat = to_tflite(model, precision="int8", representative_data=data, float_io=True)
    got, shapes = _run_by_name(flat, {"": data[:4]})
    assert shapes == [(1, 20, 20, 3)]
    want = model.predict(data[:4], verbose=0)
    assert np.abs(got - want).max() <= 0.03 * np.abs(want).max()
