"""cp: a k_h x k_w conv as 1x1 (c_in -> r), depthwise k_h x 1, depthwise 1 x k_w, 1x1 (r -> c_out).

A rank-r CP decomposition W ~ sum_r l_r a_r (x) b_r (x) c_r (x) d_r of the HWIO kernel, fitted by ALS
(tensorly `parafac`, SVD init). l_r is spread evenly over the four factors (each column gets l_r^(1/4)) so
no factor dwarfs another under int8 (NOTES: 0.10 -> 0.045 max error after balancing). At the CP rank bound
k_h*k_w*min(c_in, c_out) an exact decomposition is built in closed form (an SVD of every spatial slice),
so "full rank" means exact here too. ALS cost grows fast with rank: `n_iter_max` and `time_budget_s` bound it.

References:
    Lebedev et al. 2015, "Speeding-up Convolutional Neural Networks Using Fine-tuned CP-Decomposition".
    Kolda & Bader 2009.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from edge_lowrank.factorize._base import Factors, check_bias, check_kernel, check_rank, relative_error


def full_rank(shape) -> int:
    kh, kw, cin, cout = shape
    return kh * kw * min(cin, cout)


@dataclasses.dataclass(frozen=True)
class CPFactors(Factors):
    """`first` (1,1,c_in,r), `vertical` (k_h,1,r,1) and `horizontal` (1,k_w,r,1) depthwise kernels,
    `last` (1,1,r,c_out), bias, error, ALS iterations run."""

    first: np.ndarray
    vertical: np.ndarray
    horizontal: np.ndarray
    last: np.ndarray
    bias: np.ndarray | None
    relative_error: float
    n_iter: int

    @property
    def rank(self) -> int:
        return int(self.first.shape[-1])

    def factor_kernels(self):
        return (self.first, self.vertical, self.horizontal, self.last)

    def to_kernel(self) -> np.ndarray:
        return np.einsum("ir,jr,cr,rn->ijcn", self.vertical[:, 0, :, 0], self.horizontal[0, :, :, 0],
                         self.first[0, 0], self.last[0, 0], optimize=True)


def _exact(w: np.ndarray):
    """Closed-form CP of rank k_h*k_w*min(c_in, c_out): one SVD per spatial position (i, j)."""
    kh, kw, cin, cout = w.shape
    m = min(cin, cout)
    a, b = np.zeros((kh, kh * kw * m)), np.zeros((kw, kh * kw * m))
    c, d = np.zeros((cin, kh * kw * m)), np.zeros((cout, kh * kw * m))
    for i in range(kh):
        for j in range(kw):
            u, s, vt = np.linalg.svd(w[i, j], full_matrices=False)
            cols = slice((i * kw + j) * m, (i * kw + j + 1) * m)
            a[i, cols], b[j, cols] = 1.0, 1.0
            c[:, cols], d[:, cols] = u * s, vt.T
    return [a, b, c, d], 0


def _svd_init(w: np.ndarray, rank: int, random_state):
    """tensorly's "svd" initialisation (leading singular vectors of each unfolding, random columns beyond
    the mode size), computed from the smaller Gram matrix of each unfolding: several times faster on
    512-channel kernels, which matters under a time budget."""
    from tensorly.cp_tensor import CPTensor

    rng = np.random.default_rng(random_state)
    factors = []
    for mode in range(w.ndim):
        unfold = np.moveaxis(w, mode, 0).reshape(w.shape[mode], -1)
        vals, vecs = np.linalg.eigh(unfold @ unfold.T)
        u = vecs[:, ::-1][:, :rank]
        if u.shape[1] < rank:
            u = np.concatenate([u, rng.normal(size=(w.shape[mode], rank - u.shape[1]))], axis=1)
        factors.append(u)
    return CPTensor((np.ones(rank), factors))


def _als(w: np.ndarray, rank: int, n_iter_max: int, time_budget_s, random_state):
    import tensorly as tl
    from tensorly.decomposition import parafac

    tl.set_backend("numpy")
    start = time.monotonic()
    count = [0]

    def stop(_cp, _err):
        count[0] += 1
        return time_budget_s is not None and time.monotonic() - start > time_budget_s

    cpt = parafac(w, rank, n_iter_max=n_iter_max, init=_svd_init(w, rank, random_state), tol=1e-7,
                  random_state=random_state, callback=stop)
    weights, factors = cpt
    factors = [np.asarray(f, np.float64) for f in factors]
    factors[0] = factors[0] * np.asarray(weights, np.float64)[None]
    return factors, max(count[0] - 1, 0)  # the callback also runs once after the init


def cp(kernel, rank: int, bias=None, *, n_iter_max: int = 100, time_budget_s: float | None = None,
       random_state: int = 0) -> CPFactors:
    """CP-decompose a conv kernel (k_h, k_w, c_in, c_out) at `rank`, factors balanced.

    Example:
        >>> w = np.random.default_rng(0).normal(size=(3, 3, 2, 4))
        >>> bool(np.allclose(cp(w, 18).to_kernel(), w))
        True
    """
    w = check_kernel(kernel, 4)
    kh, kw, cin, cout = w.shape
    rank = check_rank(rank, full_rank(w.shape))
    factors, n_iter = _exact(w) if rank == full_rank(w.shape) else _als(w, rank, n_iter_max, time_budget_s,
                                                                         random_state)
    norms = [np.linalg.norm(f, axis=0) for f in factors]
    lam = np.prod(norms, axis=0)
    scale = np.where(lam > 0, lam, 1.0) ** 0.25
    bal = [f / np.where(n > 0, n, 1.0)[None] * scale[None] for f, n in zip(factors, norms)]
    a, b, c, d = bal
    f = CPFactors(c[None, None], a[:, None, :, None], b[None, :, :, None], d.T[None, None],
                  check_bias(bias, cout), 0.0, n_iter)
    return dataclasses.replace(f, relative_error=relative_error(w, f.to_kernel()))
