"""Quantization-aware fine-tuning (QAT) with tensorflow-model-optimization, isolated in a child process.

tfmot 0.8.1 works on tf_keras (Keras 2) only: importing it sets `TF_USE_LEGACY_KERAS` for the whole process
and its `quantize_model` refuses Keras 3 models (NOTES). So this process never imports it. It flattens the
Keras 3 model (nested low-rank blocks included) into a list of stock layers with their configs, weights and
inputs, writes that and the data to a temporary folder, and runs `python -m converters._qat_worker` there.
The child rebuilds the graph in tf_keras, applies `tfmot.quantization.keras.quantize_model` (which folds
Conv2D -> BatchNormalization pairs its own way), fine-tunes it by distillation from the float teacher's
outputs (plus the labels when given), and converts it with the TFLite converter to a full-integer flatbuffer
with the same op set as post-training quantization.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from converters.convert import ConversionError, weights_sha256
from edge_lowrank.errors import DataError, ModelError

# Measured on seqbn_fmnist (int8 top-1 agreement with Keras, 10,000 test images; PTQ 96.8%): 1 epoch at
# 1e-4 with labels 96.9%, at 3e-4 without 95.9%; 2 epochs at 2e-5 with labels 97.7%; 3 epochs at 1e-5 with
# labels 97.9%, without (pure distillation) 98.1%. QAT starts from trained weights: a large rate undoes them.
DEFAULT_EPOCHS = 3
DEFAULT_BATCH_SIZE = 64
DEFAULT_LR = 1e-5
DEFAULT_TIMEOUT_S = 3600

# Layers the child knows how to rebuild in tf_keras (the config keys both Keras versions share).
STOCK_LAYERS = frozenset({
    "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense", "BatchNormalization", "ReLU", "Activation",
    "Softmax", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Add",
    "Subtract", "Multiply", "Concatenate", "Flatten", "Reshape", "Dropout", "ZeroPadding2D",
})  # and Identity, which flatten_graph drops
# Config keys that differ between Keras 3 and tf_keras or that the frozen rebuild does not need.
_DROP_KEYS = ("dtype", "synchronized", "kernel_initializer", "bias_initializer", "depthwise_initializer",
              "pointwise_initializer", "beta_initializer", "gamma_initializer", "moving_mean_initializer",
              "moving_variance_initializer", "kernel_regularizer", "bias_regularizer", "activity_regularizer",
              "depthwise_regularizer", "pointwise_regularizer", "beta_regularizer", "gamma_regularizer",
              "kernel_constraint", "bias_constraint", "depthwise_constraint", "pointwise_constraint",
              "beta_constraint", "gamma_constraint", "lora_rank", "lora_alpha", "quantization_config", "seed",
              "noise_shape")


def _clean_config(layer) -> dict:
    cfg = dict(layer.get_config())
    for key in _DROP_KEYS:
        cfg.pop(key, None)
    for key in ("activation",):
        if key in cfg and not isinstance(cfg[key], str):
            raise ModelError(f"Layer '{layer.name}' has a custom activation {cfg[key]!r}: QAT rebuilds stock "
                             "layers only.")
    return json.loads(json.dumps(cfg, default=lambda o: list(o) if isinstance(o, tuple) else str(o)))


def flatten_graph(model) -> tuple[dict, list[np.ndarray]]:
    """The Keras 3 `model` as a flat graph of stock layers: (spec, weight arrays).

    spec = {"input_shape": [...], "layers": [{"name", "class_name", "config", "inputs": [tensor names],
    "weights": [indices]}...], "outputs": [tensor names]}; a layer's output tensor is named after the layer.
    Nested Sequential/Functional models (edge-lowrank's low-rank blocks) are inlined.

    Raises:
        ModelError: several inputs, a subclassed model, a layer called more than once, or a layer that is
            not a stock layer QAT can rebuild.
    """
    import keras

    from edge_lowrank.rewrite.graph import graph_nodes

    if not isinstance(model, keras.Model):
        raise ModelError(f"Expected a keras.Model. Received: {type(model).__name__}.")
    if len(model.inputs) != 1:
        raise ModelError(f"QAT supports single-input models; this one has {len(model.inputs)} inputs.")
    layers_out, weights, used = [], [], set()

    def inline(m, in_names: list[str], prefix: str) -> list[str]:
        names = {id(t): n for t, n in zip(m.inputs, in_names)}
        for node in reversed(graph_nodes(m)):  # deepest first: inputs before their consumers
            op = node.operation
            if isinstance(op, keras.layers.InputLayer):
                continue
            ins = [names[id(t)] for t in node.input_tensors]
            if isinstance(op, keras.Model):
                outs = inline(op, ins, prefix + op.name + "/")
            elif isinstance(op, keras.layers.Identity):
                # where the rewrite folded a BatchNormalization: a no-op the tfmot registry refuses, so its
                # consumers read its input
                outs = ins
            else:
                cls = type(op).__name__
                if cls not in STOCK_LAYERS:
                    raise ModelError(f"Layer '{prefix}{op.name}' is a {cls}: QAT rebuilds only stock layers "
                                     f"({', '.join(sorted(STOCK_LAYERS))}).")
                if id(op) in used:
                    raise ModelError(f"Layer '{prefix}{op.name}' is called more than once: QAT does not "
                                     "rebuild shared layers.")
                used.add(id(op))
                if op.dtype_policy.compute_dtype != "float32":
                    raise ModelError(f"Layer '{prefix}{op.name}' computes in {op.dtype_policy.compute_dtype}: "
                                     "QAT needs a float32 model.")
                name = (prefix + op.name).replace("/", "__")
                first = len(weights)
                weights.extend(np.asarray(w, np.float32) for w in op.get_weights())
                layers_out.append({"name": name, "class_name": cls, "config": _clean_config(op),
                                   "inputs": ins, "weights": list(range(first, len(weights)))})
                outs = [name]
            for t, n in zip(node.output_tensors, outs):
                names[id(t)] = n
        return [names[id(t)] for t in m.outputs]

    outputs = inline(model, ["input"], "")
    spec = {"input_shape": [int(d) for d in model.inputs[0].shape[1:]], "layers": layers_out,
            "outputs": outputs}
    return spec, weights


def _is_probability(y: np.ndarray) -> bool:
    return bool(y.ndim == 2 and y.min() >= 0 and y.max() <= 1 and np.allclose(y.sum(axis=1), 1, atol=1e-3))


def qat_tflite(model, train_x, teacher_out=None, *, calib_x, labels=None, epochs: int = DEFAULT_EPOCHS,
               batch_size: int = DEFAULT_BATCH_SIZE, lr: float = DEFAULT_LR, label_weight: float = 0.0,
               freeze_bn: bool = True, float_io: bool = False,
               equalize: bool = True, metadata: dict | None = None, seed: int = 0,
               timeout_s: float = DEFAULT_TIMEOUT_S, input_range=None) -> bytes:
    """Fine-tune `model` with fake quantization (tfmot) in a child process and return int8 TFLite bytes.

    Args:
        model: a Keras 3 model of stock layers (original or rewritten), or a path to a .keras/.h5 file.
        train_x: float32 NHWC images to fine-tune on (real data, e.g. 10,000 training images).
        teacher_out: the float model's outputs on `train_x` (probabilities or logits); computed from `model`
            when None. The student learns them (KL divergence for probabilities, MSE otherwise).
        calib_x: representative images for the converter (input scale for int8 I/O).
        labels: optional int labels of `train_x`; with probability outputs, their cross-entropy is mixed in.
        label_weight: the labels' share of the loss; the rest is the teacher term. Default 0 (pure
            distillation): it kept the int8 model closest to the float one.
        epochs, batch_size, lr, seed: the fine-tuning (Adam, constant rate).
        freeze_bn: keep every BatchNormalization in inference mode with the float model's statistics
            (batch statistics of a short fine-tuning run drift from them).
        float_io: keep float32 inputs and outputs instead of int8.
        equalize: first equalize chained low-rank factors on `calib_x`, as the PTQ export does.
        metadata: stored in the flatbuffer besides the tool's own fields.

    Returns:
        The flatbuffer bytes.

    Raises:
        ModelError: the model has layers QAT cannot rebuild.
        DataError: empty or mismatched data.
        ConversionError: the child failed (its one-line reason).
    """
    from converters.calibration import validate_representative_data
    from converters.metadata import embed_metadata
    from edge_lowrank import __version__

    if isinstance(model, (str, os.PathLike)):
        from edge_lowrank.modelio import load_keras_model

        model = load_keras_model(model)
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise DataError(f"Invalid value for `{name}`. Expected a positive int. Received: {value!r}.")
    if not lr > 0:
        raise DataError(f"Invalid value for `lr`. Expected a positive number. Received: {lr!r}.")
    if not 0 <= label_weight <= 1:
        raise DataError(f"Invalid value for `label_weight`. Expected a number in [0, 1]. "
                        f"Received: {label_weight!r}.")
    spec, weights = flatten_graph(model)
    shape = spec["input_shape"]
    train_x = validate_representative_data(train_x, shape, input_range)
    calib_x = validate_representative_data(calib_x, shape, input_range)
    source_sha = weights_sha256(model)
    if equalize:
        from converters.equalize import equalize_factor_chains

        model, pairs = equalize_factor_chains(model, calib_x)
        if pairs:
            spec, weights = flatten_graph(model)
    probe_y = np.asarray(model.predict(train_x[:32], batch_size=32, verbose=0), np.float32)
    if teacher_out is None:
        teacher_out = model.predict(train_x, batch_size=256, verbose=0)
    teacher_out = np.asarray(teacher_out, np.float32).reshape(len(teacher_out), -1)
    if len(teacher_out) != len(train_x):
        raise DataError(f"teacher_out has {len(teacher_out)} rows for {len(train_x)} training images.")
    data = {"train_x": train_x, "teacher": teacher_out, "calib_x": calib_x,
            "probe_y": probe_y.reshape(len(probe_y), -1)}
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (len(train_x),) or not np.issubdtype(labels.dtype, np.integer):
            raise DataError(f"labels must be {len(train_x)} ints, one per training image. "
                            f"Received shape {labels.shape}, dtype {labels.dtype}.")
        if labels.min() < 0 or labels.max() >= teacher_out.shape[1]:
            raise DataError(f"labels must lie in [0, {teacher_out.shape[1]}); received "
                            f"[{labels.min()}, {labels.max()}].")
        if label_weight > 0:  # checked either way: a mismatch is a mistake even when unused
            data["labels"] = labels.astype(np.int64)
        else:
            labels = None
    options = {"epochs": int(epochs), "batch_size": int(batch_size), "lr": float(lr), "seed": int(seed),
               "float_io": bool(float_io), "probabilities": _is_probability(teacher_out),
               "label_weight": float(label_weight), "freeze_bn": bool(freeze_bn)}

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edge-lowrank-qat-") as tmp:
        folder = Path(tmp)
        (folder / "spec.json").write_text(json.dumps({**spec, "options": options}))
        np.savez(folder / "weights.npz", *weights)
        np.savez(folder / "data.npz", **data)
        result = _run_child(folder, timeout_s)
        flat = (folder / "model.tflite").read_bytes()
    info = {
        "tool": "edge-lowrank",
        "tool_version": __version__,
        "precision": "int8",
        "io": "float32" if float_io else "int8",
        "source_weights_sha256": source_sha,
        "calibration_samples": int(len(calib_x)),
        "qat": {**{k: options[k] for k in ("epochs", "batch_size", "lr", "seed", "freeze_bn")},
                "train_samples": int(len(train_x)), "labels": labels is not None,
                "label_weight": options["label_weight"] if labels is not None else 0.0,
                "loss": "kl" if options["probabilities"] else "mse",
                "history": result.get("history", []), "seconds": round(time.perf_counter() - start, 1),
                "tfmot_version": result.get("tfmot_version")},
    }
    info.update(metadata or {})
    return embed_metadata(flat, info)


def _run_child(folder: Path, timeout_s: float) -> dict:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env["TF_USE_LEGACY_KERAS"] = "1"  # the child's tf.keras is tf_keras; this process is untouched
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "") if env.get("PYTHONPATH") else root
    try:
        proc = subprocess.run([sys.executable, "-m", "converters._qat_worker", str(folder)], env=env,
                              capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise ConversionError(f"QAT did not finish within {timeout_s:g} s.") from None
    err = folder / "error.json"
    if err.is_file():
        raise ConversionError(f"QAT failed: {json.loads(err.read_text())['error']}")
    if proc.returncode != 0 or not (folder / "model.tflite").is_file():
        tail = [line for line in proc.stderr.splitlines() if line.strip()][-1:] or ["no output"]
        raise ConversionError(f"QAT child exited with code {proc.returncode}: {tail[0][:300]}")
    return json.loads((folder / "result.json").read_text())
