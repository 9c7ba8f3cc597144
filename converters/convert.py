"""Keras 3 model -> TFLite flatbuffer bytes, in four precisions, with the converter path that works.

`TFLiteConverter.from_keras_model` is the only path used: `from_concrete_functions` with Keras 3 silently
gives a weightless model that outputs NaN (NOTES). The model gets a static batch of 1 first, or Flatten turns
into SHAPE/STRIDED_SLICE/PACK ops that XNNPACK does not take and the graph splits. The converter's chatter
(the "Saved artifact at" banner on stdout, MLIR logs on stderr) is caught at the file-descriptor level.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings

import numpy as np

from converters.quiet import quiet_fds
from converters.calibration import validate_representative_data
from converters.metadata import embed_metadata
from edge_lowrank.errors import DataError, EdgeLowrankError, ModelError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

PRECISIONS = ("float32", "float16", "dynamic", "int8")
_ALIASES = {"fp32": "float32", "fp16": "float16", "dynamic-range": "dynamic", "dynamic_range": "dynamic"}


class ConversionError(EdgeLowrankError, ValueError):
    """The TFLite converter refused the model, or the conversion request is inconsistent."""


def normalize_precision(precision: str) -> str:
    p = _ALIASES.get(str(precision).lower(), str(precision).lower())
    if p not in PRECISIONS:
        raise ConversionError(f"Invalid value for argument `precision`. Expected one of {PRECISIONS}. "
                              f"Received: precision={precision!r}.")
    return p


def weights_sha256(model) -> str:
    """A hash of the model's weight values and shapes in order (names vary between Keras sessions)."""
    h = hashlib.sha256()
    for w in model.weights:
        a = np.ascontiguousarray(np.asarray(w.numpy() if hasattr(w, "numpy") else w))
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _converter_message(exc: Exception, log: bytes) -> str:
    """The most useful single line from a converter failure (its own 'error:' line when it has one)."""
    text = (str(exc) + "\n" + log.decode("utf-8", "replace"))
    for line in text.splitlines():
        m = re.search(r"error: (.*)", line)
        if m and m.group(1).strip():
            return m.group(1).strip()[:300]
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return first[:300]


def to_tflite(model, *, precision: str = "float32", representative_data=None, float_io: bool = False,
              metadata: dict | None = None, input_range=None, allow_select_tf_ops: bool = False,
              equalize: bool = True) -> bytes:
    """Convert a Keras 3 model to TFLite bytes.

    Args:
        model: a `keras.Model` (original or rewritten; only stock layers).
        precision: ``float32``; ``float16`` (weights in fp16, about half the size); ``dynamic`` (int8
            weights, float activations); ``int8`` (full integer, calibrated on `representative_data`).
        representative_data: float32 NHWC samples for ``int8`` calibration (real images, e.g. 200); a list
            with one array per input for a multi-input model. An input size the model leaves open
            (None, None) is fixed to the samples' size in the flatbuffer.
        float_io: for ``int8``, keep float32 inputs and outputs (a QUANTIZE/DEQUANTIZE pair is added)
            instead of int8 ones.
        metadata: a JSON-serialisable dict stored in the model (scheme, ranks, source hash...); the tool
            version, precision and a hash of the weights are always added.
        input_range: (low, high) the model expects; representative data outside it is refused.
        allow_select_tf_ops: let the converter fall back to Select TF (Flex) ops.
        equalize: for ``int8``, first equalize the channel ranges between chained low-rank factors on the
            representative data (`converters.equalize`; the float function is unchanged).

    Returns:
        The flatbuffer bytes; the same model and data give the same bytes.

    Raises:
        ConversionError: bad precision, int8 without representative_data, or the converter failed.
        DataError: representative data empty, of the wrong shape or range.
    """
    import keras

    from edge_lowrank import __version__
    from edge_lowrank.modelio import with_static_batch

    precision = normalize_precision(precision)
    if not isinstance(model, keras.Model):
        raise ModelError(f"Expected a keras.Model. Received: {type(model).__name__}.")
    if precision == "int8" and representative_data is None:
        raise ConversionError("precision='int8' needs `representative_data` (real input samples for "
                              "calibration); received representative_data=None.")
    calib = None
    equalized = 0
    if precision == "int8":
        calib = _representative_inputs(model, representative_data, input_range)
        # A (None, None) input takes the calibration images' size: XNNPACK and int8 want static shapes.
        static = with_static_batch(model, 1, [c.shape[1:] for c in calib])
        if equalize:
            from converters.equalize import equalize_factor_chains

            equal_model, equalized = equalize_factor_chains(model, calib if len(calib) > 1 else calib[0])
            if equalized:
                static = with_static_batch(equal_model, 1, [c.shape[1:] for c in calib])
    else:
        static = with_static_batch(model, 1)

    import tensorflow as tf

    names = [t.name for t in static.inputs]

    def representative():  # by input name: the converted signature orders inputs by name, not as Keras does
        for i in range(len(calib[0])):
            yield [calib[0][i:i + 1]] if len(calib) == 1 else {n: c[i:i + 1] for n, c in zip(names, calib)}

    with quiet_fds(1, 2) as log, warnings.catch_warnings():
        # "Statistics for quantized inputs were expected": int8 I/O gets its scale from calibration.
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        try:
            converter = tf.lite.TFLiteConverter.from_keras_model(static)
            ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
            if precision == "float16":
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
                converter.target_spec.supported_types = [tf.float16]
            elif precision == "dynamic":
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
            elif precision == "int8":
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
                converter.representative_dataset = representative
                ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
                if not float_io:
                    converter.inference_input_type = tf.int8
                    converter.inference_output_type = tf.int8
            if allow_select_tf_ops:
                ops = ops + [tf.lite.OpsSet.SELECT_TF_OPS]
            converter.target_spec.supported_ops = ops
            flat = converter.convert()
        except Exception as e:
            log.seek(0)
            raise ConversionError(f"The TFLite converter failed ({precision}): "
                                  f"{_converter_message(e, log.read())}") from None
    info = {
        "tool": "edge-lowrank",
        "tool_version": __version__,
        "precision": precision,
        "io": "float32" if (precision != "int8" or float_io) else "int8",
        "source_weights_sha256": weights_sha256(model),
    }
    if calib is not None:
        info["calibration_samples"] = int(len(calib[0]))
        info["equalized_factor_pairs"] = int(equalized)
    info.update(metadata or {})
    return embed_metadata(bytes(flat), info)



def _representative_inputs(model, data, input_range) -> list[np.ndarray]:
    """The calibration samples as one checked float32 array per model input.

    `data` is an array for a single-input model, or a list with one array per input (same sample count).
    A size the model leaves open (None) is taken from the data.
    """
    arrays = list(data) if isinstance(data, (list, tuple)) else [data]
    if len(arrays) != len(model.inputs):
        raise ConversionError(f"The model has {len(model.inputs)} inputs; representative data gives "
                              f"{len(arrays)} array(s): pass one array per input, in the model's input order.")
    out = []
    for t, x in zip(model.inputs, arrays):
        x = np.asarray(x)
        if x.ndim != len(t.shape):
            raise DataError(f"Representative data has samples of shape {tuple(x.shape[1:])}, the model input "
                            f"'{t.name}' wants {tuple(t.shape[1:])}.")
        want = tuple(x.shape[i + 1] if d is None else d for i, d in enumerate(t.shape[1:]))
        out.append(validate_representative_data(x, want, input_range if len(arrays) == 1 else None))
    if len({len(x) for x in out}) != 1:
        raise DataError(f"Representative data arrays hold different sample counts: {[len(x) for x in out]}.")
    return out


def to_tflite_file(keras_path, **kwargs) -> bytes:
    """`to_tflite` of the model saved at `keras_path`; what the converter's child process runs."""
    import keras

    from edge_lowrank.modelio import load_keras_model

    try:
        return to_tflite(load_keras_model(keras_path), **kwargs)
    finally:
        keras.backend.clear_session()  # the warm child converts many models: keep none of them


def to_tflite_isolated(model, *, subject: str, **kwargs) -> bytes:
    """`to_tflite` in a child process (`edge_lowrank.isolate`): a crash of the converter is one line.

    The child stays warm for the next call (TensorFlow's import is paid once); one that crashed is replaced.

    Args:
        model: a `keras.Model` (saved to a temporary .keras for the child, so the child converts exactly
            this model) or the path of a .keras file.
        subject: the model's name in messages.
        **kwargs: `to_tflite`'s options.

    Raises:
        As `to_tflite`; CrashError when the converter's process dies (one line naming `subject` and the signal).
    """
    import tempfile
    from pathlib import Path

    from edge_lowrank.isolate import run_isolated

    stage = f"TFLite converter ({normalize_precision(kwargs.get('precision', 'float32'))})"
    if isinstance(model, (str, os.PathLike)):
        return run_isolated(to_tflite_file, str(model), stage=stage, subject=subject, reuse="tensorflow",
                            **kwargs)
    import keras

    if not isinstance(model, keras.Model):
        raise ModelError(f"Expected a keras.Model. Received: {type(model).__name__}.")
    with tempfile.TemporaryDirectory(prefix="edge-lowrank-convert.") as tmp:
        path = Path(tmp) / "model.keras"
        model.save(path)
        return run_isolated(to_tflite_file, str(path), stage=stage, subject=subject, reuse="tensorflow",
                            **kwargs)
