"""output: a layer fitted to its responses on real data (Zhang et al. 2015, the linear case).

For responses y = W^T x + b collected on calibration inputs, with mean mu and covariance C, the rank-r
projection that minimises E||y - y_hat||^2 keeps the top-r eigenvectors P (c_out x r) of C:
y_hat = mu + P P^T (y - mu). The conv becomes k x k (c_in -> r, kernel W P) then 1x1 (r -> c_out, kernel P^T,
bias mu + P P^T (b - mu)): the mean goes through the bias. Unlike `channel`, which fits the weights, this
fits what the layer actually outputs, so at the same rank its response error is lower.

References:
    Zhang, Zou, He, Sun 2015, "Accelerating Very Deep Convolutional Networks for Classification and Detection".
"""

from __future__ import annotations

import dataclasses

import numpy as np

from edge_lowrank.errors import DataError
from edge_lowrank.factorize._base import TwoFactors, check_bias, check_kernel, check_rank, relative_error


@dataclasses.dataclass(frozen=True)
class OutputFactors(TwoFactors):
    """`first` (k_h, k_w, c_in, r) (or (in, r)), `second` (1, 1, r, c_out) (or (r, out)), bias, errors.

    `relative_error` is of the kernel (comparable with the other schemes), `response_error` of the
    calibration responses, `eigenvalues` the response covariance spectrum.
    """

    response_error: float
    eigenvalues: np.ndarray


PRIOR = 1e-6  # weight of the kernel's Gram matrix added to the response covariance, relative to it


def response_stats(responses, kernel=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, eigenvalues (descending) and eigenvectors of the responses (N, c_out).

    With `kernel`, its output Gram matrix W^T W (the response covariance under white inputs) is added at
    `PRIOR` times the data's scale. Data alone span at most N - 1 directions: a Dense layer on 64 images
    has 63, and its "full rank" projection then threw away real output directions (relative error 0.31 on
    a Dense-only model at full rank). The prior orders the directions the data never reached by the weights,
    so the top min(in, out) eigenvectors span the kernel's whole output space and full rank is exact.
    """
    y = np.asarray(responses, np.float64)
    if y.ndim != 2 or y.shape[0] < 2:
        raise DataError(f"The output scheme needs at least 2 calibration responses of shape (N, c_out). "
                        f"Received: shape={y.shape}.")
    if not np.all(np.isfinite(y)):
        raise DataError("Calibration responses hold NaN or Inf: check the calibration data.")
    mu = y.mean(axis=0)
    yc = y - mu
    cov = yc.T @ yc / len(y)
    if kernel is not None:
        w = np.asarray(kernel, np.float64).reshape(-1, y.shape[1])
        gram = w.T @ w
        tg = float(np.trace(gram))
        if tg > 0:
            cov = cov + gram * (PRIOR * max(float(np.trace(cov)), 1e-30) / tg)
    vals, vecs = np.linalg.eigh(cov)
    return mu, np.clip(vals[::-1], 0, None), vecs[:, ::-1]


def output(kernel, rank: int, responses, bias=None) -> OutputFactors:
    """Fit the layer with kernel `kernel` to `responses` (N, c_out), its linear outputs (bias included,
    activation excluded) on calibration data, at `rank`.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> w, x = rng.normal(size=(16, 8)), rng.normal(size=(100, 16))
        >>> f = output(w, 8, x @ w)
        >>> bool(np.allclose(f.to_kernel(), w))
        True
    """
    w = check_kernel(kernel, (2, 4))
    cout = w.shape[-1]
    rank = check_rank(rank, min(int(np.prod(w.shape[:-1])), cout))
    y = np.asarray(responses)
    if y.ndim != 2 or y.shape[1] != cout:
        raise DataError(f"Invalid value for argument `responses`. Expected shape (N, {cout}). "
                        f"Received: shape={y.shape}.")
    b = check_bias(bias, cout)
    mu, vals, vecs = response_stats(y, w)
    p = vecs[:, :rank]  # (cout, r)
    proj = p @ p.T
    first = (w.reshape(-1, cout) @ p).reshape(w.shape[:-1] + (rank,))
    second = p.T.reshape((1, 1, rank, cout) if w.ndim == 4 else (rank, cout))
    bias_after = mu + ((np.zeros(cout) if b is None else b) - mu) @ proj
    y = np.asarray(y, np.float64)
    resp_err = relative_error(y - mu, (y - mu) @ proj)
    f = OutputFactors(first, second, bias_after, 0.0, resp_err, vals)
    return dataclasses.replace(f, relative_error=relative_error(w, f.to_kernel()))
