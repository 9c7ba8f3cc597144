"""Real legacy files: write them with an older Keras, then check what Keras 3 and `load_keras_model` make of them.

Not a test (it needs Keras versions the project does not install). Put the older Keras in a scratch folder,
outside the venv, and run the writer with it; run the checker with the project's venv:

    Z=build/legacy-zoo   # inside the checkout, ignored by git
    pip download --no-deps tf-keras==2.21.0 keras==3.8.0 -d $Z/whl
    unzip -q $Z/whl/tf_keras-*.whl -d $Z/tfk && unzip -q $Z/whl/keras-3.8.0-*.whl -d $Z/k38
    TF_USE_LEGACY_KERAS=1 PYTHONPATH=$Z/tfk python tests/modelio/legacy_zoo.py write $Z/files
    PYTHONPATH=$Z/k38 python tests/modelio/legacy_zoo.py write $Z/files
    python tests/modelio/legacy_zoo.py check $Z/files

`write` saves each model as `.h5` and `.keras` with the writer's own outputs on fixed inputs; `check` prints,
per file, whether plain Keras 3 loads it, the repairs applied, and the largest output difference.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _models(keras, tf_keras: bool):
    """Small models with the layers whose configs changed between Keras versions."""
    L = keras.layers
    out = {}
    out["cnn"] = keras.Sequential([  # the input shape on the first layer, as tf.keras users wrote it
        L.Conv2D(4, 3, activation="relu", input_shape=(16, 16, 3)), L.BatchNormalization(),
        L.DepthwiseConv2D(3), L.SeparableConv2D(4, 3), L.Flatten(), L.Dense(3)])
    base = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(32, 32, 3), alpha=0.35)
    out["transfer-seq"] = keras.Sequential([keras.Input((32, 32, 3)), base, L.GlobalAveragePooling2D(), L.Dense(3)])
    inp = keras.Input((32, 32, 3))
    out["transfer-fn"] = keras.Model(inp, L.Dense(3)(L.GlobalAveragePooling2D()(base(inp))))
    inner = keras.Sequential([keras.Input((16, 16, 3)), L.Conv2D(4, 3), L.ReLU()])
    inp = keras.Input((16, 16, 3))
    out["shared-nested"] = keras.Model(inp, L.Dense(3)(L.Flatten()(L.Add()([inner(inp), inner(inp)]))))
    inp = keras.Input((20,))
    x = L.Conv1D(8, 3, dilation_rate=2, padding="causal")(L.Embedding(50, 8)(inp))
    x = L.Bidirectional(L.LSTM(4))(L.GRU(6, return_sequences=True)(x))
    out["seq1d"] = keras.Model(inp, L.Dense(2)(x))
    inp = keras.Input((16, 16, 3))
    x = L.RandomFlip("horizontal")(L.Rescaling(1 / 255.0)(inp))
    x = L.PReLU()(L.LeakyReLU()(L.Conv2D(8, 3, padding="same")(x)))
    y = L.MaxPooling2D()(L.Conv2DTranspose(8, 3, strides=2, padding="same")(x))
    x = L.SpatialDropout2D(0.1)(L.LayerNormalization()(L.Concatenate()([x, y])))
    out["zoo2d"] = keras.Model(inp, L.Dense(4, activation="softmax")(L.GlobalMaxPooling2D()(x)))
    if tf_keras:  # raw tf ops become TFOpLambda layers, which Keras 3 does not have: a refusal to check
        import tensorflow as tf

        inp = keras.Input((16, 16, 3))
        out["tfop"] = keras.Model(inp, L.Dense(3)(L.Flatten()(tf.nn.relu(L.Conv2D(4, 3)(inp)))))
    return out


def write(folder: Path) -> None:
    import numpy as np

    tf_keras = os.environ.get("TF_USE_LEGACY_KERAS") == "1"
    if tf_keras:
        import tf_keras as keras
    else:
        import keras
    tag = f"{'tfkeras' if tf_keras else 'keras'}{keras.__version__}"
    folder.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    for name, model in _models(keras, tf_keras).items():
        x = np.random.default_rng(0).random((2, *model.inputs[0].shape[1:]), dtype=np.float32)
        if name == "seq1d":
            x = (x * 50).astype("int32").astype("float32")
        np.savez(folder / f"{tag}_{name}.npz", x=x, y=model.predict(x, verbose=0))
        for ext in (".h5", ".keras"):
            model.save(folder / f"{tag}_{name}{ext}")
        print(f"wrote {tag}_{name}.h5/.keras", file=sys.stderr)


def check(folder: Path) -> int:
    import keras
    import numpy as np

    from edge_lowrank.errors import ModelError, RepairWarning
    from edge_lowrank.modelio import load_keras_model

    counts = {"plain": 0, "repaired": 0, "refused": 0}
    for path in sorted([*folder.glob("*.h5"), *folder.glob("*.keras")]):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                keras.models.load_model(path, compile=False, safe_mode=True)
            plain = "loads"
        except Exception:
            plain = "fails"
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                model = load_keras_model(path)
        except ModelError as e:
            counts["refused"] += 1
            print(f"{path.name}: plain Keras 3 {plain}; refused: {str(e)[:160]}")
            continue
        repairs = [str(w.message).split(": repaired ", 1)[1] for w in caught if issubclass(w.category, RepairWarning)]
        counts["repaired" if repairs else "plain"] += 1
        ref = np.load(path.with_suffix(".npz"))
        diff = float(np.abs(model.predict(ref["x"], verbose=0) - ref["y"]).max())
        print(f"{path.name}: plain Keras 3 {plain}; {len(repairs)} repairs; max |output - writer's| {diff:.1e}")
    print(f"{sum(counts.values())} files: {counts['plain']} load as they are, {counts['repaired']} after "
          f"repairs, {counts['refused']} refused with one line")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["write", "check"])
    parser.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    if args.mode == "write":
        write(args.folder)
        return 0
    return check(args.folder)


if __name__ == "__main__":
    sys.exit(main())
