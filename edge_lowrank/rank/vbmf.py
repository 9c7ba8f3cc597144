"""Analytic empirical variational Bayesian matrix factorization (EVBMF): a rank from the spectrum alone.

EVBMF estimates the noise variance sigma^2 of Y = B A^T + E by minimising the free energy over sigma^2, then
keeps the singular values above the analytic threshold sqrt(M sigma^2 (1 + tau)(1 + alpha / tau)). Kim et al.
2016 use it on the channel unfoldings of a conv kernel to pick Tucker-2 ranks. Pure numpy: the 1-D
minimisation is a log-grid search refined by golden section.

References:
    Nakajima, Tomioka, Sugiyama, Babacan 2013, "Global analytic solution of fully-observed variational
    Bayesian matrix factorization" (JMLR 14).
    Kim et al. 2016 (VBMF ranks for Tucker-2).
"""

from __future__ import annotations

import numpy as np

TAU_BAR_COEF = 2.5129  # the constant of Nakajima et al. 2013, Eq. (34)


def _tau(x, alpha):
    return 0.5 * (x - (1 + alpha) + np.sqrt(np.maximum((x - (1 + alpha)) ** 2 - 4 * alpha, 0.0)))


def _free_energy(sigma2, L, M, s, residual, xubar):
    H = len(s)
    alpha = L / M
    x = s ** 2 / (M * sigma2)
    z1, z2 = x[x > xubar], x[x <= xubar]
    tau_z1 = _tau(z1, alpha)
    return (np.sum(z2 - np.log(z2)) + np.sum(z1 - tau_z1) + np.sum(np.log((tau_z1 + 1) / z1))
            + alpha * np.sum(np.log(tau_z1 / alpha + 1)) + residual / (M * sigma2) + (L - H) * np.log(sigma2))


def evbmf_rank(singular_values, shape, residual: float = 0.0) -> int:
    """Rank EVBMF keeps for a matrix of `shape` with these singular values (all of them, descending).

    Args:
        singular_values: the matrix's singular values (not squared).
        shape: (rows, cols) of the matrix.
        residual: squared norm not covered by `singular_values` (0 when all are given).

    Returns:
        The number of components above the EVBMF threshold (0 means "noise only").

    Example:
        >>> rng = np.random.default_rng(0)
        >>> y = rng.normal(size=(60, 5)) @ rng.normal(size=(5, 80)) * 3 + rng.normal(size=(60, 80))
        >>> evbmf_rank(np.linalg.svd(y, compute_uv=False), y.shape)
        5
    """
    s = np.sort(np.asarray(singular_values, np.float64))[::-1]
    L, M = sorted(int(d) for d in shape)
    s = s[:L]
    s = s[s > 1e-12 * (s[0] if len(s) and s[0] > 0 else 1.0)]
    if len(s) < 2:
        return len(s)
    H = len(s)
    alpha = L / M
    tauubar = TAU_BAR_COEF * np.sqrt(alpha)
    xubar = (1 + tauubar) * (1 + alpha / tauubar)
    eh_ub = int(min(np.ceil(L / (1 + alpha)) - 1, H)) - 1
    upper = (np.sum(s ** 2) + residual) / (L * M)
    tail = s[eh_ub + 1:] if eh_ub + 1 < H else s[-1:]
    lower = max(tail[0] ** 2 / (M * xubar), np.mean(tail ** 2) / M)
    lower = min(lower, upper * 0.999)
    grid = np.geomspace(lower, upper, 200)
    vals = np.array([_free_energy(g, L, M, s, residual, xubar) for g in grid])
    i = int(np.argmin(vals))
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    phi = (np.sqrt(5) - 1) / 2
    for _ in range(60):  # golden section on the bracket around the grid minimum
        c, d = b - phi * (b - a), a + phi * (b - a)
        if _free_energy(c, L, M, s, residual, xubar) < _free_energy(d, L, M, s, residual, xubar):
            b = d
        else:
            a = c
    sigma2 = (a + b) / 2
    threshold = np.sqrt(M * sigma2 * (1 + tauubar) * (1 + alpha / tauubar))
    return int(np.sum(s > threshold))
