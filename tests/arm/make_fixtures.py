"""Regenerate the small .tflite fixtures the ARM tests run (fp32 and int8 of one small CNN).

Committed so the QEMU tests need no TensorFlow and no training; the weights are random (seeded), which is
enough for instruction counts and host/ARM agreement. Run: `python tests/arm/make_fixtures.py`.
"""

import contextlib
import io
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

HERE = Path(__file__).parent / "fixtures"


def small_cnn() -> keras.Model:
    keras.utils.set_random_seed(1234)
    x = inp = keras.Input((28, 28, 1), batch_size=1)
    x = keras.layers.Conv2D(16, 3, activation="relu")(x)
    x = keras.layers.Conv2D(32, 3, strides=2, activation="relu")(x)
    x = keras.layers.Conv2D(32, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(10)(x)
    return keras.Model(inp, x)


def softmax_only() -> keras.Model:
    """An int8 SOFTMAX alone: XNNPACK does not take it, so nothing is delegated (the fallback test)."""
    inp = keras.Input((10,), batch_size=1)
    return keras.Model(inp, keras.layers.Softmax()(inp))


def convert(model, int8: bool) -> bytes:
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        rng = np.random.default_rng(0)

        def rep():
            for _ in range(32):
                yield [rng.random((1, *model.inputs[0].shape[1:]), dtype=np.float32)]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    with contextlib.redirect_stdout(io.StringIO()):
        return conv.convert()


if __name__ == "__main__":
    HERE.mkdir(exist_ok=True)
    m = small_cnn()
    (HERE / "small_cnn_fp32.tflite").write_bytes(convert(m, int8=False))
    (HERE / "small_cnn_int8.tflite").write_bytes(convert(m, int8=True))
    (HERE / "softmax_int8.tflite").write_bytes(convert(softmax_only(), int8=True))
    print("wrote", sorted(p.name for p in HERE.glob("*.tflite")))
