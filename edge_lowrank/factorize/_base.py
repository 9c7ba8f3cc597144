"""What every factorization shares: input checks, the relative error, balanced truncated SVD.

Kernels are HWIO (Keras Conv2D) or (in, out) (Keras Dense). Errors are Frobenius norms relative to the
original kernel, ||W - W_hat|| / ||W||, so they compare across layers.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from edge_lowrank.errors import EdgeLowrankError


class FactorizationError(EdgeLowrankError, ValueError):
    """A kernel or rank that no factorization can take (NaN weights, rank out of range, wrong shape)."""


def check_kernel(kernel, ndim: int | tuple[int, ...], what: str = "kernel") -> np.ndarray:
    """Return `kernel` as a float64 array after checking its rank and that every weight is finite."""
    w = np.asarray(kernel)
    ndims = (ndim,) if isinstance(ndim, int) else ndim
    if w.ndim not in ndims:
        raise FactorizationError(f"Invalid value for argument `{what}`. Expected an array with {ndims} "
                                 f"dimensions. Received: shape={w.shape}.")
    if not np.all(np.isfinite(w)):
        raise FactorizationError(f"Invalid value for argument `{what}`: it holds NaN or Inf weights "
                                 f"(shape {w.shape}); no factorization of it means anything.")
    return w.astype(np.float64)


def check_bias(bias, n: int) -> np.ndarray | None:
    if bias is None:
        return None
    b = np.asarray(bias, dtype=np.float64).reshape(-1)
    if b.shape != (n,):
        raise FactorizationError(f"Invalid value for argument `bias`. Expected shape ({n},). Received: {b.shape}.")
    if not np.all(np.isfinite(b)):
        raise FactorizationError("Invalid value for argument `bias`: it holds NaN or Inf.")
    return b


def check_rank(rank, full: int, what: str = "rank") -> int:
    """An int rank in [1, full]; anything else is a `FactorizationError` naming the allowed range."""
    if isinstance(rank, (bool, np.bool_)) or not isinstance(rank, (int, np.integer)):
        raise FactorizationError(f"Invalid value for argument `{what}`. Expected an int in [1, {full}]. "
                                 f"Received: {what}={rank!r}.")
    if not 1 <= int(rank) <= full:
        raise FactorizationError(f"Invalid value for argument `{what}`. Expected an int in [1, {full}] "
                                 f"(full rank is {full}). Received: {what}={rank}.")
    return int(rank)


def relative_error(original: np.ndarray, approx: np.ndarray) -> float:
    norm = float(np.linalg.norm(original))
    if norm == 0.0:
        return 0.0 if not np.any(approx) else float("inf")
    return float(np.linalg.norm(original - approx) / norm)


def balanced_svd(matrix: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best rank-`rank` factors (Eckart-Young) as (U*sqrt(S), sqrt(S)*V^T, S).

    Splitting sqrt(S) between the two factors keeps their norms equal, which keeps per-channel int8
    quantization error of each factor small (NOTES: unbalanced CP factors doubled the int8 error).
    """
    u, s, vt = np.linalg.svd(matrix, full_matrices=False)
    root = np.sqrt(s[:rank])
    return u[:, :rank] * root, root[:, None] * vt[:rank], s


@dataclasses.dataclass(frozen=True)
class Factors:
    """Base of the typed results: unpacks into its array fields, counts parameters, knows its error."""

    def __iter__(self):
        return iter(self.factor_kernels() + (self.bias,))

    def factor_kernels(self) -> tuple[np.ndarray, ...]:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def n_params(self) -> int:
        """Weights of all factors plus the bias (carried by the last factor)."""
        n = sum(int(k.size) for k in self.factor_kernels())
        return n + (0 if self.bias is None else int(self.bias.size))


@dataclasses.dataclass(frozen=True)
class TwoFactors(Factors):
    """Two chained factors whose kernels multiply back into the layer's: `first` (..., r), `second` (..., r, out).

    Shared by `channel`, `weight-svd` and `output`, which differ in how they choose the factors, not in shape.
    """

    first: np.ndarray
    second: np.ndarray
    bias: np.ndarray | None
    relative_error: float

    @property
    def rank(self) -> int:
        return int(self.first.shape[-1])

    def factor_kernels(self):
        return (self.first, self.second)

    def to_kernel(self) -> np.ndarray:
        r = self.rank
        w = self.first.reshape(-1, r) @ self.second.reshape(r, -1)
        return w.reshape(self.first.shape[:-1] + self.second.shape[-1:])
