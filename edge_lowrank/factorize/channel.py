"""channel: a k x k conv with c_out filters as a k x k conv with r filters then a 1x1 conv (r -> c_out).

The truncated SVD of the (k_h*k_w*c_in) x c_out matrix is the optimal pair in the Frobenius norm of the
weights (a filter-basis scheme, Jaderberg et al. 2014 "scheme 2" in its closed form). Factors are balanced.
A Dense kernel is the same matrix: this is then weight-svd.

References:
    Jaderberg, Vedaldi, Zisserman 2014; Zhang et al. 2015 (the same layout, fitted to data: `output`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from edge_lowrank.factorize._base import (TwoFactors, balanced_svd, check_bias, check_kernel, check_rank,
                                          relative_error)


def full_rank(shape) -> int:
    return min(int(np.prod(shape[:-1])), int(shape[-1]))


@dataclasses.dataclass(frozen=True)
class ChannelFactors(TwoFactors):
    """`first` (k_h, k_w, c_in, r) (or (in, r) for Dense), `second` (1, 1, r, c_out) (or (r, out))."""

    singular_values: np.ndarray


def channel(kernel, rank: int, bias=None) -> ChannelFactors:
    """Factorize a conv kernel (k_h, k_w, c_in, c_out), or a Dense kernel, through r filters.

    Example:
        >>> w = np.random.default_rng(0).normal(size=(3, 3, 4, 8))
        >>> f = channel(w, 8)
        >>> f.first.shape, f.second.shape, bool(np.allclose(f.to_kernel(), w))
        ((3, 3, 4, 8), (1, 1, 8, 8), True)
    """
    w = check_kernel(kernel, (2, 4))
    cout = w.shape[-1]
    rank = check_rank(rank, full_rank(w.shape))
    mat = w.reshape(-1, cout)
    a, b, s = balanced_svd(mat, rank)
    second_shape = (1, 1, rank, cout) if w.ndim == 4 else (rank, cout)
    err = relative_error(mat, a @ b)
    return ChannelFactors(a.reshape(w.shape[:-1] + (rank,)), b.reshape(second_shape), check_bias(bias, cout), err, s)
