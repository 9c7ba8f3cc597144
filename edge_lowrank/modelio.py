"""Reading Keras model files safely, and giving models the static batch of 1 that TFLite export wants."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from edge_lowrank.errors import ModelError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def load_keras_model(path, *, compile: bool = False):
    """Load a `.keras` (or legacy `.h5`) model in Keras safe mode: code inside a model file never runs.

    Raises:
        ModelError: the file is missing, not a Keras model, or needs code (Lambda, unknown custom layers).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"Model file {path} does not exist.")
    suffix = path.suffix.lower()
    if suffix == ".keras" and not zipfile.is_zipfile(path):
        raise ModelError(f"{path} is not a Keras model file (a .keras file is a zip archive).")
    if suffix not in (".keras", ".h5", ".hdf5"):
        raise ModelError(f"{path} is not a Keras model file. Expected a .keras, .h5 or .hdf5 file.")
    import keras

    try:
        return keras.models.load_model(path, compile=compile, safe_mode=True)
    except Exception as e:  # Keras raises many types; the user needs one line
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "safe_mode" in str(e) or "Lambda" in str(e):
            msg = "it holds a Lambda layer or other code, which safe mode refuses to run"
        elif "Could not locate" in str(e) or "Unknown layer" in str(e):
            msg = f"it uses a custom layer that is not registered ({msg[:160]})"
        raise ModelError(f"Cannot load {path}: {msg[:300]}") from None


def with_static_batch(model, batch_size: int = 1):
    """Return a model equal to `model` whose input has a fixed batch size.

    TFLite and XNNPACK want a static batch: with batch None, Flatten becomes SHAPE/STRIDED_SLICE/PACK ops
    that XNNPACK does not take (see NOTES). Weights are shared with `model`, not copied.
    """
    import keras

    if all(t.shape[0] == batch_size for t in model.inputs):
        return model
    inputs = [keras.Input(shape=tuple(t.shape[1:]), batch_size=batch_size, dtype=t.dtype, name=t.name)
              for t in model.inputs]
    outputs = model(inputs if len(inputs) > 1 else inputs[0])
    return keras.Model(inputs, outputs, name=model.name)
