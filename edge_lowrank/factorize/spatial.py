"""spatial: a k_h x k_w conv as a vertical k_h x 1 conv (r filters) then a horizontal 1 x k_w conv.

The kernel W[i, j, c, n] reshaped to the (k_h*c_in) x (k_w*c_out) matrix M[(i, c), (j, n)] is exactly the
composition of the two convs; its truncated SVD is the optimal pair in the Frobenius norm (the closed form of
Tai et al. 2016 for the scheme of Jaderberg et al. 2014). Factors are balanced (sqrt of the singular values
on each side) for int8.

References:
    Jaderberg, Vedaldi, Zisserman 2014, "Speeding up Convolutional Neural Networks with Low Rank Expansions".
    Tai et al. 2016, "Convolutional neural networks with low-rank regularization".
"""

from __future__ import annotations

import dataclasses

import numpy as np

from edge_lowrank.factorize._base import (Factors, balanced_svd, check_bias, check_kernel, check_rank,
                                          relative_error)


def spatial_matrix(w: np.ndarray) -> np.ndarray:
    kh, kw, cin, cout = w.shape
    return w.transpose(0, 2, 1, 3).reshape(kh * cin, kw * cout)


def full_rank(shape) -> int:
    kh, kw, cin, cout = shape
    return min(kh * cin, kw * cout)


@dataclasses.dataclass(frozen=True)
class SpatialFactors(Factors):
    """`vertical` (k_h, 1, c_in, r), `horizontal` (1, k_w, r, c_out), the bias, the error."""

    vertical: np.ndarray
    horizontal: np.ndarray
    bias: np.ndarray | None
    relative_error: float
    singular_values: np.ndarray

    @property
    def rank(self) -> int:
        return int(self.vertical.shape[-1])

    def factor_kernels(self):
        return (self.vertical, self.horizontal)

    def to_kernel(self) -> np.ndarray:
        # W[i, j, c, n] = sum_r V[i, 0, c, r] H[0, j, r, n]
        return np.einsum("icr,jrn->ijcn", self.vertical[:, 0], self.horizontal[0], optimize=True)


def spatial(kernel, rank: int, bias=None) -> SpatialFactors:
    """Split a conv kernel (k_h, k_w, c_in, c_out) into vertical and horizontal factors of rank `rank`.

    Example:
        >>> w = np.random.default_rng(0).normal(size=(3, 3, 4, 8))
        >>> bool(np.allclose(spatial(w, 12).to_kernel(), w))
        True
    """
    w = check_kernel(kernel, 4)
    kh, kw, cin, cout = w.shape
    rank = check_rank(rank, full_rank(w.shape))
    a, b, s = balanced_svd(spatial_matrix(w), rank)
    vertical = a.reshape(kh, cin, rank)[:, None]  # (kh, 1, cin, r)
    horizontal = b.reshape(rank, kw, cout).transpose(1, 0, 2)[None]  # (1, kw, r, cout)
    f = SpatialFactors(vertical, horizontal, check_bias(bias, cout), 0.0, s)
    return dataclasses.replace(f, relative_error=relative_error(w, f.to_kernel()))
