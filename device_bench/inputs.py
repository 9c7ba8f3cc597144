"""Model inputs: seeded random tensors (TFLite's tool default) or real images quantized as the model expects.

An int8/uint8 model takes `q = round(x / scale) + zero_point` with its OWN input scale and zero point; feeding
float images without that (or with another model's parameters) silently wrecks accuracy, so it is done here once.
"""

from __future__ import annotations

import numpy as np

from .errors import BenchError

RANDOM_SEED = 0


def random_input(detail: dict, rng: np.random.Generator) -> np.ndarray:
    """A random tensor for one input: floats in [0, 1), integers over the whole range of their type."""
    shape = tuple(int(d) for d in detail["shape"])
    dtype = np.dtype(detail["dtype"])
    if np.issubdtype(dtype, np.floating):
        return rng.random(shape, dtype=np.float32).astype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, shape).astype(np.bool_)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        lo, hi = max(info.min, -(2 ** 31)), min(info.max, 2 ** 31 - 1)
        return rng.integers(lo, hi, shape, endpoint=True).astype(dtype)
    raise BenchError(f"Input `{detail.get('name')}` has dtype {dtype}, which device_bench cannot fill.")


def random_inputs(details: list[dict], seed: int = RANDOM_SEED) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [random_input(d, rng) for d in details]


def quantize_input(x: np.ndarray, detail: dict) -> np.ndarray:
    """Fit one float sample `x` to an input: reshape to its shape, quantize with its scale and zero point."""
    shape = tuple(int(d) for d in detail["shape"])
    x = np.asarray(x)
    if x.size != int(np.prod(shape)):
        raise BenchError(f"A data sample of shape {x.shape} does not fit the model input "
                         f"`{detail.get('name')}` of shape {list(shape)}.")
    x = x.reshape(shape)
    dtype = np.dtype(detail["dtype"])
    if np.issubdtype(dtype, np.floating):
        return x.astype(dtype)
    if np.issubdtype(dtype, np.integer):
        scale, zero_point = detail.get("quantization", (0.0, 0))
        if not scale:
            raise BenchError(f"Input `{detail.get('name')}` is {dtype} without a quantization scale: "
                             f"cannot feed it float images.")
        info = np.iinfo(dtype)
        q = np.round(x.astype(np.float64) / scale) + zero_point
        return np.clip(q, info.min, info.max).astype(dtype)
    raise BenchError(f"Input `{detail.get('name')}` has dtype {dtype}, which device_bench cannot feed images to.")
