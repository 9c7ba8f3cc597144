"""The quantization debugger on the real converter and LiteRT: per-op error, the worst op named, and a float
fallback that removes that op's error."""

import numpy as np
import pytest

from converters.quant_debug import ROUNDING_NOISE, QuantDebugger, QuantReport, fallback_latency, layer_of, remedies
from edge_lowrank.errors import DataError, ModelError

pytestmark = pytest.mark.filterwarnings("ignore:.*experimental_preserve_all_tensors")


@pytest.fixture(scope="module")
def data():
    from edge_lowrank.data import load_dataset

    return load_dataset("fashion-mnist:train").take(400), load_dataset("fashion-mnist:test").take(300)


@pytest.fixture(scope="module")
def broken(data):
    """A trained CNN whose `fc1` int8 weights are ruined on purpose: feature columns that are always zero
    (conv channel 0 is switched off) get weights 1000x the others, so every per-channel weight scale is huge
    and the real weights round to a few levels. The float function is unchanged (0 x 1000)."""
    import keras
    from keras import layers

    train, _ = data
    keras.utils.set_random_seed(5)
    inp = keras.Input((28, 28, 1))
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inp)
    x = layers.MaxPooling2D(4, name="pool1")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(32, activation="relu", name="fc1")(x)
    out = layers.Dense(10, activation="softmax", name="predictions")(x)
    model = keras.Model(inp, out)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(train.x, train.y, epochs=3, batch_size=32, verbose=0)
    conv, fc1 = model.get_layer("conv1"), model.get_layer("fc1")
    bias = conv.bias.numpy()
    bias[0] = -1e3  # channel 0 is always 0 after the ReLU
    conv.bias.assign(bias)
    kernel = fc1.kernel.numpy()
    kernel[0::8] = 1e3 * np.abs(kernel).max()  # the rows fed by channel 0 (channels are the fastest axis)
    fc1.kernel.assign(kernel)
    return model


@pytest.fixture(scope="module")
def debugger(broken, data):
    return QuantDebugger(broken, data[0].x[:100])


def _layer_error(model, flat, layer_name, node, x):
    """RMS error of the .tflite tensor `node` against the Keras output of `layer_name` on `x`."""
    import keras
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    ref = keras.Model(model.inputs, model.get_layer(layer_name).output).predict(x, verbose=0)
    # Builtin kernels: tensors inside an XNNPACK partition are not written back to the interpreter.
    interp = Interpreter(model_content=flat, experimental_preserve_all_tensors=True,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    tensor = next(t for t in interp.get_tensor_details() if t["name"] == node)
    got = []
    for i in range(len(x)):
        scale, zero = inp["quantization"]
        interp.set_tensor(inp["index"], np.clip(np.round(x[i:i + 1] / scale + zero), -128, 127).astype(np.int8))
        interp.invoke()
        value = interp.get_tensor(tensor["index"])
        if value.dtype == np.int8:
            s, z = tensor["quantization"]
            value = (value.astype(np.float32) - z) * s
        got.append(value.reshape(-1))
    return float(np.sqrt(np.mean((np.stack(got) - ref.reshape(len(x), -1)) ** 2))), tensor["dtype"]


def test_report_names_the_broken_layer(debugger, broken):
    report = debugger.report()
    assert report.samples == 100
    assert {e.layer for e in report.layers} >= {"conv1", "fc1", "predictions"}
    worst = report.worst(3)
    assert [e.rmse_scale for e in worst] == sorted((e.rmse_scale for e in worst), reverse=True)
    assert worst[0].layer == "fc1" and worst[0].op == "FULLY_CONNECTED"
    assert worst[0].rmse_scale > 5 * ROUNDING_NOISE, report.render()
    healthy = [e for e in report.layers if e.layer == "conv1"]
    assert healthy and healthy[0].rmse_scale < 2 * ROUNDING_NOISE, report.render()
    assert all(e.range == pytest.approx(255 * e.scale) for e in report.layers)
    assert "fc1" in report.render(3)


def test_no_fallback_equals_the_ptq_export(debugger, broken, data):
    from converters.convert import to_tflite
    from converters.fidelity import run_tflite

    x = data[1].x[:50]
    ptq = to_tflite(broken, precision="int8", representative_data=data[0].x[:100])
    assert np.array_equal(run_tflite(debugger.quantized(), x), run_tflite(ptq, x))


def test_float_fallback_removes_the_error_of_the_kept_layer(debugger, broken, data):
    from converters.audit import audit_ops
    from converters.fidelity import check_fidelity
    from converters.metadata import read_metadata

    _, test = data
    ptq = debugger.quantized()
    fallback, kept = debugger.fallback(1)
    assert [k.layer for k in kept] == ["fc1"]
    x = test.x[:100]
    err_ptq, dtype_ptq = _layer_error(broken, ptq, "fc1", kept[0].node, x)
    err_fb, dtype_fb = _layer_error(broken, fallback, "fc1", kept[0].node, x)
    assert dtype_ptq == np.int8 and dtype_fb == np.float32
    assert err_fb < 0.25 * err_ptq, (err_fb, err_ptq)
    print(f"fc1 RMS error vs Keras: int8 {err_ptq:.4g}, kept in float {err_fb:.4g}")

    audit = audit_ops(fallback)
    assert audit.op_counts.get("DEQUANTIZE", 0) >= 1 and audit.input_dtypes == ("int8",)
    assert read_metadata(fallback)["float_fallback"] == ["fc1"]
    before, after = check_fidelity(broken, ptq, test), check_fidelity(broken, fallback, test)
    assert after.mean_abs_err < before.mean_abs_err
    assert after.top1_agreement >= before.top1_agreement


@pytest.mark.slow
def test_fallback_latency_is_measured(debugger):
    fallback, _ = debugger.fallback(1)
    lat = fallback_latency(debugger.quantized(), fallback, rounds=2, min_secs=0.1)
    assert lat["int8_ms"] > 0 and lat["fallback_ms"] > 0
    assert lat["ratio"] == pytest.approx(lat["fallback_ms"] / lat["int8_ms"], rel=0.01)


def test_remedies_and_bad_input(debugger, broken):
    report = debugger.report()
    assert remedies(0.99, report) is None
    line = remedies(0.689, report, calib_samples=200)
    assert line.startswith("int8 top-1 agreement 68.9% is below 97%")
    assert "--calib-samples 1000" in line and "--qat" in line and "fc1" in line
    assert "--calib-samples" not in remedies(0.5, None, calib_samples=2000)
    healthy = QuantReport(tuple(e for e in report.layers if e.layer != "fc1"), report.samples)
    assert "no op stands out" in remedies(0.9, healthy) and "--float-fallback" not in remedies(0.9, healthy)
    with pytest.raises(DataError, match="Unknown op output 'nope'"):
        debugger.quantized(["nope"])
    with pytest.raises(DataError, match="Invalid value for `float-fallback`"):
        debugger.fallback(-1)
    with pytest.raises(DataError, match="samples of shape"):
        QuantDebugger(broken, np.zeros((4, 8, 8, 1), np.float32))
    with pytest.raises(ModelError, match="Expected a keras.Model"):
        QuantDebugger("model.keras", np.zeros((4, 28, 28, 1), np.float32))


def test_layer_of_reads_keras_scopes():
    names = ["conv1", "conv1_bn", "fc1"]
    assert layer_of("sequential_1/conv1_bn_1/batchnorm/mul_1", names) == "conv1_bn"
    assert layer_of("model_1/fc1_1/MatMul;model_1/fc1_1/Relu", names) == "fc1"
    assert layer_of("StatefulPartitionedCall_1:0", names) == "StatefulPartitionedCall_1:0"
