"""Representative data for full-integer quantization: real samples, checked before the converter sees them.

The converter accepts nonsense quietly: an empty set, images of another size (it fails deep inside MLIR),
or pixels in 0..255 for a model trained on 0..1 (every activation scale is then wrong and accuracy drops
without an error). Each is refused here with one line.
"""

from __future__ import annotations

import numpy as np

from edge_lowrank.errors import DataError

DEFAULT_CALIB_SAMPLES = 200
DEFAULT_CALIB_DATA = "fashion-mnist:calib"
# Relative slack on the declared input range before data counts as out of range.
RANGE_TOLERANCE = 0.05


def validate_representative_data(x, input_shape, value_range=None) -> np.ndarray:
    """Check calibration images against the model input and return them as float32 NHWC.

    Args:
        x: array (N, *input_shape).
        input_shape: the model's input shape without the batch dimension.
        value_range: (low, high) the model expects, or None to skip the range check.

    Raises:
        DataError: empty, wrong shape, not finite, constant, or outside `value_range`.
    """
    if x is None:
        raise DataError("Representative data is missing.")
    x = np.asarray(x)
    if x.size == 0 or x.ndim == 0 or len(x) == 0:
        raise DataError("Representative data is empty: int8 calibration needs real samples "
                        f"(received shape {x.shape}).")
    want = tuple(int(d) for d in input_shape)
    if tuple(x.shape[1:]) != want:
        raise DataError(f"Representative data has samples of shape {tuple(x.shape[1:])}, "
                        f"the model input wants {want}.")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise DataError(f"Representative data must be numeric. Received: dtype={x.dtype}.")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise DataError("Representative data holds NaN or Inf values.")
    lo, hi = float(x.min()), float(x.max())
    if lo == hi:
        raise DataError(f"Representative data is constant (every value is {lo}): calibration would "
                        "learn nothing about the input range.")
    if value_range is not None:
        want_lo, want_hi = (float(v) for v in value_range)
        slack = RANGE_TOLERANCE * (want_hi - want_lo)
        if lo < want_lo - slack or hi > want_hi + slack:
            raise DataError(f"Representative data spans [{lo:g}, {hi:g}], outside the model's input range "
                            f"[{want_lo:g}, {want_hi:g}] (e.g. 0..255 pixels for a model trained on 0..1).")
    return np.ascontiguousarray(x)


def calibration_samples(dataset, n: int = DEFAULT_CALIB_SAMPLES) -> np.ndarray:
    """The first `n` images of a `Dataset` (the calibration subset by default), as float32."""
    if n is None or int(n) <= 0:
        raise DataError(f"Invalid value for `calib-samples`. Expected a positive int. Received: {n}.")
    if len(dataset) == 0:
        raise DataError(f"Calibration data {dataset.name} is empty.")
    return np.asarray(dataset.x[: int(n)], dtype=np.float32)
