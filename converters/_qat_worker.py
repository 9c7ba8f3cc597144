"""Child process of `converters.qat`: tf_keras rebuild, tfmot quantize_model, distillation, TFLite int8.

Run as ``python -m converters._qat_worker FOLDER`` with ``TF_USE_LEGACY_KERAS=1``. FOLDER holds spec.json
(the flat graph and options), weights.npz and data.npz; the child writes model.tflite and result.json, or
error.json with a one-line reason. It imports tf_keras and tfmot, never Keras 3.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
import traceback
import warnings
from pathlib import Path

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


class WorkerError(Exception):
    """A reason to stop, reported to the parent as one line."""


def _make_layer(tfk, entry: dict):
    cls = getattr(tfk.layers, entry["class_name"], None)
    if cls is None:
        raise WorkerError(f"tf_keras has no layer {entry['class_name']} (layer '{entry['name']}').")
    accepted = set(inspect.signature(cls.__init__).parameters) | {"name", "trainable"}
    cfg = {k: v for k, v in entry["config"].items() if k in accepted}
    cfg["name"] = entry["name"]
    try:
        return cls(**cfg)
    except Exception as e:
        raise WorkerError(f"cannot rebuild layer '{entry['name']}' ({entry['class_name']}) in tf_keras: "
                          f"{str(e).splitlines()[0][:200]}") from None


# tfmot folds BatchNormalization only right after a linear Conv2D, DepthwiseConv2D or Dense; these
# classes feed a BN that it folds.
_FOLDS_INTO = ("Conv2D", "DepthwiseConv2D", "Dense")


def _standalone_bn(entry: dict, by_name: dict) -> bool:
    """A BatchNormalization tfmot will not fold (e.g. after a ReLU: the Conv -> ReLU -> BN order)."""
    if entry["class_name"] != "BatchNormalization":
        return False
    src = by_name.get(entry["inputs"][0])
    return not (src and src["class_name"] in _FOLDS_INTO and src["config"].get("activation") == "linear")


@functools.lru_cache(maxsize=None)
def output_quantize_config(tfmot):
    """A QuantizeConfig that fake-quantizes a layer's output only, as int8 PTQ quantizes a standalone BN
    (a MUL/ADD pair with an int8 output). tfmot's registry has none for BatchNormalization."""
    base = tfmot.quantization.keras.QuantizeConfig
    quantizers = tfmot.quantization.keras.quantizers

    class OutputQuantizeConfig(base):
        def get_weights_and_quantizers(self, layer):
            return []

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            pass

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            return [quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False,
                                                      narrow_range=False)]

        def get_config(self):
            return {}

    return OutputQuantizeConfig


def build(tfk, spec: dict, weights: list, batch_size=None, tfmot=None):
    """The tf_keras Functional model of `spec` with its weights; annotated for tfmot when `tfmot` is given
    (BatchNormalization frozen unless options say otherwise; standalone ones get an output quantizer)."""
    inp = tfk.Input(shape=tuple(spec["input_shape"]), batch_size=batch_size, name="input")
    tensors = {"input": inp}
    by_name = {e["name"]: e for e in spec["layers"]}
    out_config = output_quantize_config(tfmot) if tfmot is not None else None
    made = []
    for entry in spec["layers"]:
        layer = _make_layer(tfk, entry)
        call = layer
        if tfmot is not None:
            annotate = tfmot.quantization.keras.quantize_annotate_layer
            if entry["class_name"] == "BatchNormalization" and spec["options"].get("freeze_bn", True):
                layer.trainable = False  # inference-mode BN: moving statistics stay those of the teacher
            if _standalone_bn(entry, by_name):
                call = annotate(layer, quantize_config=out_config())
            else:
                call = annotate(layer)
        ins = [tensors[n] for n in entry["inputs"]]
        tensors[entry["name"]] = call(ins if len(ins) > 1 else ins[0])
        made.append((layer, entry))
    for layer, entry in made:
        try:
            layer.set_weights([weights[i] for i in entry["weights"]])
        except ValueError as e:
            raise WorkerError(f"weights of layer '{entry['name']}' do not fit its tf_keras rebuild: "
                              f"{str(e).splitlines()[0][:200]}") from None
    outs = [tensors[n] for n in spec["outputs"]]
    return tfk.Model(inp, outs if len(outs) > 1 else outs[0])


def _dataset(tf, x, targets, batch_size, seed):
    ds = tf.data.Dataset.from_tensor_slices((x, targets))
    return ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).batch(batch_size)


def run(folder: Path) -> dict:
    import tensorflow as tf
    import tf_keras as tfk
    import tensorflow_model_optimization as tfmot

    spec = json.loads((folder / "spec.json").read_text())
    opts = spec["options"]
    with np.load(folder / "weights.npz") as f:
        weights = [f[f"arr_{i}"] for i in range(len(f.files))]
    with np.load(folder / "data.npz") as f:
        data = {k: f[k] for k in f.files}
    tfk.utils.set_random_seed(opts["seed"])

    annotated = build(tfk, spec, weights, tfmot=tfmot)
    # Check the rebuild against the Keras 3 model's own outputs before trusting it as a student.
    probe, want = data["train_x"][:len(data["probe_y"])], data["probe_y"]
    got = annotated.predict(probe, batch_size=32, verbose=0).reshape(len(probe), -1)
    err = float(np.abs(got - want).max())
    if err > 1e-3 * max(1.0, float(np.abs(want).max())):
        raise WorkerError(f"the tf_keras rebuild differs from the Keras 3 model (max abs err {err:.3g})")
    try:
        scope = {"OutputQuantizeConfig": output_quantize_config(tfmot)}
        with tfmot.quantization.keras.quantize_scope(scope):
            qat = tfmot.quantization.keras.quantize_apply(annotated)
    except Exception as e:
        raise WorkerError(f"tfmot quantize_apply refused the model: {str(e).splitlines()[0][:240]}") from None

    probs = opts["probabilities"]
    teacher = data["teacher"]
    labels = data.get("labels")
    if probs:
        kl = tfk.losses.KLDivergence()
        ce = tfk.losses.SparseCategoricalCrossentropy()

        def loss(y_true, y_pred):
            value = kl(y_true[:, :-1], y_pred)
            if labels is not None:
                w = opts["label_weight"]
                value = (1 - w) * value + w * ce(tf.cast(y_true[:, -1], tf.int64), y_pred)
            return value

        extra = labels.astype(np.float32) if labels is not None else np.zeros(len(teacher), np.float32)
        targets = np.concatenate([teacher, extra[:, None]], axis=1)
    else:
        loss, targets = tfk.losses.MeanSquaredError(), teacher
    qat.compile(optimizer=tfk.optimizers.Adam(opts["lr"]), loss=loss)
    hist = qat.fit(_dataset(tf, data["train_x"], targets, opts["batch_size"], opts["seed"]),
                   epochs=opts["epochs"], verbose=0)

    # Static batch 1 for export: with batch None, Flatten becomes SHAPE/STRIDED_SLICE/PACK ops.
    inp = tfk.Input(shape=tuple(spec["input_shape"]), batch_size=1, name="input")
    static = tfk.Model(inp, qat(inp))
    calib = data["calib_x"]

    def representative():
        for i in range(len(calib)):
            yield [calib[i:i + 1]]

    converter = tf.lite.TFLiteConverter.from_keras_model(static)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if not opts["float_io"]:
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            flat = converter.convert()
        except Exception as e:
            raise WorkerError(f"the TFLite converter failed on the QAT model: "
                              f"{str(e).strip().splitlines()[0][:240]}") from None
    (folder / "model.tflite").write_bytes(flat)
    return {"history": [round(float(v), 5) for v in hist.history["loss"]], "rebuild_max_abs_err": err,
            "tfmot_version": getattr(tfmot, "__version__", None)}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    folder = Path(argv[0])
    # The converter prints a banner on stdout; the parent reads files, not streams.
    sys.stdout = sys.stderr
    try:
        result = run(folder)
    except WorkerError as e:
        (folder / "error.json").write_text(json.dumps({"error": str(e)}))
        return 1
    except Exception as e:  # noqa: BLE001 - the parent needs one line, the traceback goes to stderr
        traceback.print_exc()
        first = (str(e).strip().splitlines() or [""])[0][:240]
        (folder / "error.json").write_text(json.dumps({"error": f"{type(e).__name__}: {first}"}))
        return 1
    (folder / "result.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
