"""Reading Keras model files safely, and giving models the static batch of 1 that TFLite export wants."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from edge_lowrank.errors import ModelError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def load_keras_model(path, *, compile: bool = False):
    """Load a `.keras` (or legacy `.h5`/`.hdf5`) model in Keras safe mode: code inside a model file never runs.

    The plain load comes first; when Keras 3 refuses a file for a known reason of older Keras versions, the
    config is repaired in a temporary copy and loaded again (`edge_lowrank.legacy`), with one
    `RepairWarning` line per repair applied.

    Raises:
        ModelError: the file is missing, not a Keras model, damaged, or needs code (Lambda, unknown custom
            layers); one line saying what failed and what to try.
    """
    path = Path(path)
    if path.is_dir() and (path / "saved_model.pb").is_file():
        raise ModelError(f"{path} is a TensorFlow SavedModel folder, which Keras 3 cannot load as a model; try: "
                         f"load it with tf_keras (TF_USE_LEGACY_KERAS=1) and save it as .keras or .h5.")
    if not path.is_file():
        raise ModelError(f"Model file {path} does not exist.")
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        raise ModelError(f"{path} is a TFLite model, not a Keras one: `edge-lowrank inspect` and `bench` take it; "
                         f"compressing needs the Keras model it came from.")
    if suffix == ".keras" and not zipfile.is_zipfile(path):
        raise ModelError(f"{path} is not a Keras model file (a .keras file is a zip archive; "
                         f"a truncated copy? copy or download it again).")
    if suffix not in (".keras", ".h5", ".hdf5"):
        raise ModelError(f"{path} is not a Keras model file. Expected a .keras, .h5 or .hdf5 file.")
    import keras

    from edge_lowrank.legacy import load_repaired

    try:
        return keras.models.load_model(path, compile=compile, safe_mode=True)
    except Exception as e:  # Keras raises many types; a known repair, or one line for the user
        error = e
    return load_repaired(path, error, compile=compile)


def with_static_batch(model, batch_size: int = 1, shapes=None):
    """Return a model equal to `model` whose input has a fixed batch size (and, given `shapes`, fixed sizes).

    TFLite and XNNPACK want a static batch: with batch None, Flatten becomes SHAPE/STRIDED_SLICE/PACK ops
    that XNNPACK does not take (see NOTES). `shapes` (one per input, without the batch) fixes the sizes a
    (None, None) input leaves open, e.g. from the calibration images. Weights are shared with `model`.
    """
    import keras

    want = [tuple(t.shape[1:]) for t in model.inputs] if shapes is None else [tuple(s) for s in shapes]
    if all(t.shape[0] == batch_size and tuple(t.shape[1:]) == w for t, w in zip(model.inputs, want)):
        return model
    inputs = [keras.Input(shape=w, batch_size=batch_size, dtype=t.dtype, name=t.name)
              for t, w in zip(model.inputs, want)]
    outputs = model(inputs if len(inputs) > 1 else inputs[0])
    return keras.Model(inputs, outputs, name=model.name)
