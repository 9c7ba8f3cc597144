"""weight-svd: a Dense kernel (in, out), or a 1x1 conv kernel, as two layers of rank r.

W (m x n) ~ A @ B with A = U*sqrt(S) (m x r) and B = sqrt(S)*V^T (r x n), the best rank-r approximation
(Eckart-Young), factors balanced for int8. It only shrinks the layer when r < m*n/(m+n).

References:
    Denton et al. 2014, "Exploiting Linear Structure Within Convolutional Networks for Efficient Evaluation".
"""

from __future__ import annotations

import dataclasses

import numpy as np

from edge_lowrank.factorize._base import (TwoFactors, balanced_svd, check_bias, check_kernel, check_rank,
                                          relative_error)


@dataclasses.dataclass(frozen=True)
class SVDFactors(TwoFactors):
    """`first` (m, r) then `second` (r, n) (shaped like the input kernel: (1, 1, m, r) for a 1x1 conv)."""

    singular_values: np.ndarray


def max_useful_rank(m: int, n: int) -> int:
    """Largest rank at which two factors hold fewer weights than the m x n matrix: r*(m+n) < m*n."""
    return (m * n - 1) // (m + n)


def weight_svd(kernel, rank: int, bias=None) -> SVDFactors:
    """Factorize a Dense kernel (in, out) or a 1x1 conv kernel (1, 1, in, out) at `rank`.

    Example:
        >>> w = np.random.default_rng(0).normal(size=(64, 32))
        >>> f = weight_svd(w, 32)
        >>> bool(np.allclose(f.to_kernel(), w))
        True
    """
    w = check_kernel(kernel, (2, 4))
    if w.ndim == 4 and w.shape[:2] != (1, 1):
        raise ValueError(f"weight_svd takes Dense or 1x1 conv kernels. Received: shape={w.shape}.")
    m, n = w.shape[-2:]
    rank = check_rank(rank, min(m, n))
    mat = w.reshape(m, n)
    a, b, s = balanced_svd(mat, rank)
    lead = w.shape[:-2]
    err = relative_error(mat, a @ b)
    return SVDFactors(a.reshape(lead + (m, rank)), b.reshape(lead + (rank, n)), check_bias(bias, n), err, s)
