"""Label-preserving image augmentation for fine-tuning (pure numpy, one fresh view of the data per epoch).

Several epochs of distillation on the same images let a small student memorise the teacher's outputs on them;
a new random view per epoch, with the teacher's outputs recomputed on that view, is more data for the price
of one teacher pass per epoch. Which transforms keep the label is a property of the data, not of the model
(a flipped shoe is a shoe, a flipped digit 7 is not), so nothing is on unless the user asks.
"""

from __future__ import annotations

import numpy as np

AUGMENTS = ("none", "flip", "shift", "flip+shift")
MAX_SHIFT = 2


def augment_images(x: np.ndarray, rng: np.random.Generator, *, flip: bool = True,
                   max_shift: int = MAX_SHIFT) -> np.ndarray:
    """A random view of NHWC images `x`: horizontal flip (p=0.5) and a shift of up to `max_shift` pixels each
    way (zero padding), drawn per image."""
    n, h, w, _ = x.shape
    if flip:
        mirror = rng.random(n) < 0.5
        x = np.where(mirror[:, None, None, None], x[:, :, ::-1, :], x)
    if max_shift:
        padded = np.pad(x, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)))
        windows = np.lib.stride_tricks.sliding_window_view(padded, (h, w), axis=(1, 2))  # n, dy, dx, c, h, w
        dy = rng.integers(0, 2 * max_shift + 1, n)
        dx = rng.integers(0, 2 * max_shift + 1, n)
        x = np.moveaxis(windows[np.arange(n), dy, dx], 1, -1)  # n, h, w, c
    return np.ascontiguousarray(x, dtype=np.float32)


def augmenter(kind: str):
    """`kind` (one of AUGMENTS) as a function (x, rng) -> view, or None for "none"."""
    if kind not in AUGMENTS:
        raise ValueError(f"Invalid augmentation {kind!r}: expected one of {', '.join(AUGMENTS)}.")
    if kind == "none":
        return None
    flip, shift = "flip" in kind, MAX_SHIFT if "shift" in kind else 0
    return lambda x, rng: augment_images(x, rng, flip=flip, max_shift=shift)
