"""tucker2-spatial: Tucker-2 whose k x k core is itself split spatially: 1x1, k_h x 1, 1 x k_w, 1x1.

The channel modes go through `tucker2` (HOOI); the core (k_h, k_w, r1, r2) then goes through the closed-form
`spatial` split at rank r3. Both steps are optimal for their part; the composition removes the k_h*k_w
product from the MACs of the core.

References:
    Kim et al. 2016 (Tucker-2); Jaderberg et al. 2014 and Tai et al. 2016 (spatial split).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from edge_lowrank.factorize.spatial import spatial as _spatial_split
from edge_lowrank.factorize._base import Factors, check_bias, check_kernel, check_rank, relative_error
from edge_lowrank.factorize.tucker2 import full_ranks as _tucker_full, tucker2


def full_ranks(shape) -> tuple[int, int, int]:
    kh, kw, cin, cout = shape
    r1, r2 = _tucker_full(shape)
    return (r1, r2, min(kh * r1, kw * r2))


@dataclasses.dataclass(frozen=True)
class Tucker2SpatialFactors(Factors):
    """`first` (1,1,c_in,r1), `vertical` (k_h,1,r1,r3), `horizontal` (1,k_w,r3,r2), `last` (1,1,r2,c_out)."""

    first: np.ndarray
    vertical: np.ndarray
    horizontal: np.ndarray
    last: np.ndarray
    bias: np.ndarray | None
    relative_error: float

    @property
    def ranks(self) -> tuple[int, int, int]:
        return self.first.shape[3], self.last.shape[2], self.vertical.shape[3]

    def factor_kernels(self):
        return (self.first, self.vertical, self.horizontal, self.last)

    def to_kernel(self) -> np.ndarray:
        core = np.einsum("icr,jrn->ijcn", self.vertical[:, 0], self.horizontal[0], optimize=True)
        return np.einsum("ijab,ca,bn->ijcn", core, self.first[0, 0], self.last[0, 0], optimize=True)


def tucker2_spatial(kernel, rank, bias=None, *, n_iter: int = 10) -> Tucker2SpatialFactors:
    """Factorize a conv kernel with ranks (r1, r2, r3), or an int for all three (each capped at its full rank
    only when given as an int).

    Example:
        >>> w = np.random.default_rng(0).normal(size=(3, 3, 4, 8))
        >>> bool(np.allclose(tucker2_spatial(w, (4, 8, 12)).to_kernel(), w))
        True
    """
    w = check_kernel(kernel, 4)
    full = full_ranks(w.shape)
    if isinstance(rank, (int, np.integer)) and not isinstance(rank, bool):
        r1, r2 = min(int(rank), full[0]), min(int(rank), full[1])
        r3 = min(int(rank), w.shape[0] * r1, w.shape[1] * r2)
        check_rank(int(rank), max(full), "rank")
    else:
        r1, r2, r3 = rank
    t = tucker2(w, (r1, r2), n_iter=n_iter)
    kh, kw = w.shape[:2]
    r3 = check_rank(r3, min(kh * r1, kw * r2), "rank[2] (r3, spatial split of the core)")
    s = _spatial_split(t.core, r3)
    f = Tucker2SpatialFactors(t.first, s.vertical, s.horizontal, t.last,
                              check_bias(bias, w.shape[3]), 0.0)
    return dataclasses.replace(f, relative_error=relative_error(w, f.to_kernel()))
