"""Build the small .tflite files the device_bench tests use (run in a subprocess: TensorFlow stays out of pytest).

`python make_models.py OUT_DIR [--sample NAME]`:
- tiny: a small CNN trained 1 epoch on 3,000 Fashion-MNIST images (a few seconds), as float32 and int8
  (`converters.to_tflite`), plus the converter's fidelity figure (`converters.check_fidelity`) for the int8
  model on the first FIDELITY_N test images, written to fidelity.json;
- topk: a weightless graph with TOPK_V2, an op TFLM lacks; split: MATMUL, TOPK_V2, MATMUL (two XNNPACK
  partitions);
- --sample NAME: the committed sample model `sample_models/NAME.keras` as int8, with its fidelity figure.
"""

import contextlib
import io
import json
import sys
from pathlib import Path

FIDELITY_N = 300


def main(out: Path, sample: str | None) -> None:
    import keras
    import numpy as np

    from converters import check_fidelity, to_tflite
    from device_bench.datasets import load_dataset

    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    calib = load_dataset("fashion-mnist:calib")
    test = load_dataset("fashion-mnist:test")
    fidelity = {}
    if sample:
        model = keras.models.load_model(Path(__file__).resolve().parents[2] / "sample_models" / f"{sample}.keras")
        name = f"{sample}_int8"
    else:
        train = load_dataset("fashion-mnist:train").take(3000)
        inp = keras.Input((28, 28, 1), batch_size=1)
        x = keras.layers.Conv2D(16, 3, activation="relu")(inp)
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Conv2D(32, 3, activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Flatten()(x)
        out_t = keras.layers.Dense(10, activation="softmax")(x)
        model = keras.Model(inp, out_t)
        # Train a batch-None twin that shares the layers (batch 64 is faster than the static batch of 1).
        inp2 = keras.Input((28, 28, 1))
        y2 = inp2
        for layer in model.layers[1:]:
            y2 = layer(y2)
        twin = keras.Model(inp2, y2)
        twin.compile("adam", "sparse_categorical_crossentropy")
        twin.fit(train.x, train.y, batch_size=64, epochs=1, verbose=0)
        with contextlib.redirect_stdout(io.StringIO()):
            (out / "tiny_f32.tflite").write_bytes(to_tflite(model, precision="float32"))
        name = "tiny_int8"
        # A model with an op TFLM has no kernel for (TOPK_V2), for the tflm target's missing-ops report.
        import tensorflow as tf

        @tf.function(input_signature=[tf.TensorSpec([1, 16], tf.float32)])
        def topk(v):
            return tf.math.top_k(v, k=3).values

        conv = tf.lite.TFLiteConverter.from_concrete_functions([topk.get_concrete_function()], topk)
        with contextlib.redirect_stdout(io.StringIO()):
            (out / "topk.tflite").write_bytes(conv.convert())

        # XNNPACK splits this graph in two partitions around TOPK_V2 (which it does not take).
        w1 = tf.constant(np.random.default_rng(0).standard_normal((16, 32)).astype(np.float32))
        w2 = tf.constant(np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([1, 16], tf.float32)])
        def split(v):
            h = tf.nn.relu(tf.matmul(v, w1))
            top = tf.math.top_k(h, k=4).values
            return tf.nn.relu(tf.matmul(top, w2))

        conv = tf.lite.TFLiteConverter.from_concrete_functions([split.get_concrete_function()], split)
        with contextlib.redirect_stdout(io.StringIO()):
            (out / "split.tflite").write_bytes(conv.convert())
    with contextlib.redirect_stdout(io.StringIO()):
        tfl = to_tflite(model, precision="int8", representative_data=calib.x[:200])
    (out / f"{name}.tflite").write_bytes(tfl)
    fid = check_fidelity(model, tfl, test, n=FIDELITY_N)
    fidelity[name] = {"accuracy_tflite": fid.accuracy_tflite, "n": fid.n, "data": "fashion-mnist:test"}
    path = out / "fidelity.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**old, **fidelity}))


if __name__ == "__main__":
    sample = sys.argv[sys.argv.index("--sample") + 1] if "--sample" in sys.argv else None
    main(Path(sys.argv[1]), sample)
