"""output, the full form (Zhang, Zou, He, Sun, TPAMI 2016, arXiv 1505.06798): nonlinear and asymmetric.

The layer keeps its kernel W and gets a rank-r map M = P Q^T (plus a bias b) on its responses. The fit sees
pairs of responses at the same positions of the calibration images: `targets` y, the original layer on the
original model's inputs, and `inputs` y_hat, the same original layer on the inputs the already compressed
layers before it produce (asymmetric; y_hat = y is the symmetric fit). With `relu` (the layer's response goes
through a ReLU before anything else reads it) it solves the paper's relaxed problem

    min over rank-r M, b, z:  sum_i ||r(y_i) - r(z_i)||^2 + lam ||z_i - (M y_hat_i + b)||^2,

alternating a closed-form z-step per element and a reduced-rank regression M-step (the paper's GSVD step:
P = top-r eigenvectors of the fitted responses' covariance B S B^T, with B the full-rank regression of z on
y_hat, M = P P^T B), with lam grown geometrically from 0.01 to 1 over 25 iterations. Without `relu` it is the
first M-step alone (z = y): the linear asymmetric fit. The iterate with the lowest post-ReLU error is kept,
counting the linear fit it starts from, so the nonlinear fit is never worse on the calibration data than the
linear one it starts from.

The layer becomes k x k (c_in -> r, kernel W Q, Q = B^T P) then 1x1 (r -> c_out, kernel P^T, bias M b0 + b).
P is orthonormal and B close to the identity, so both factors keep the original layer's scale (int8).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from edge_lowrank.errors import DataError
from edge_lowrank.factorize._base import check_bias, check_kernel, check_rank, relative_error
from edge_lowrank.factorize.output import PRIOR, OutputFactors

ITERATIONS = 25
LAMBDAS = (0.01, 1.0)
RIDGE = 1e-6  # pull of the regression B towards the identity (the symmetric fit), relative to the mean variance
# ... plus this times c_out / N: with few responses per output (a Dense layer sees one per image) the regression
# of c_out x c_out unknowns fits noise. Measured on the sample VGG's fc1 (512 outputs, 384 images to fit, 128
# held out, nonlinear asymmetric at rank 40): held-out post-ReLU error 0.375 at 1e-6 alone, 0.236-0.239 with
# 0.01-1 here (0.13 with this rule); the convs (25,000-40,000 responses) do not move.
DATA_RIDGE = 0.1


@dataclasses.dataclass(frozen=True)
class NonlinearOutputFactors(OutputFactors):
    """`OutputFactors` of the nonlinear/asymmetric fit. `response_error` is the error the fit minimises:
    of the post-ReLU responses with `relu`, of the linear ones without, relative to the targets' centred
    energy, on the calibration pairs; `linear_response_error` the same error of the fit it starts from."""

    linear_response_error: float = 0.0
    relu: bool = False
    asymmetric: bool = False
    iterations: int = 0


def _pairs(kernel, targets, inputs):
    w = check_kernel(kernel, (2, 4))
    cout = w.shape[-1]
    y = np.asarray(targets, np.float64)
    x = y if inputs is None else np.asarray(inputs, np.float64)
    for name, a in (("targets", y), ("inputs", x)):
        if a.ndim != 2 or a.shape[1] != cout or a.shape[0] < 2:
            raise DataError(f"Invalid value for argument `{name}`. Expected shape (N >= 2, {cout}). "
                            f"Received: shape={a.shape}.")
        if not np.all(np.isfinite(a)):
            raise DataError(f"Calibration responses (`{name}`) hold NaN or Inf: check the calibration data.")
    if x.shape != y.shape:
        raise DataError(f"`targets` and `inputs` must be paired (same shape). Received: {y.shape} and {x.shape}.")
    return w, y, x


class _Regression:
    """The reduced-rank regression of z on x (both (N, c)), with what stays fixed across iterations."""

    def __init__(self, x, w, rank):
        self.n, c = x.shape
        self.rank = rank
        self.mx = x.mean(0)
        self.xc = x - self.mx
        sxx = self.xc.T @ self.xc / self.n
        self.eps = (RIDGE + DATA_RIDGE * c / self.n) * max(float(np.trace(sxx)) / c, 1e-30)
        self.inv = np.linalg.inv(sxx + self.eps * np.eye(c))
        gram = w.reshape(-1, c).T @ w.reshape(-1, c)  # orders the directions the data never reached (output.py)
        tg = float(np.trace(gram))
        self.s = sxx + (gram * (PRIOR * max(float(np.trace(sxx)), 1e-30) / tg) if tg > 0 else 0)

    def fit(self, z):
        """(P (c, r), Q (c, r), b (c,), eigenvalues): M = P Q^T, the best rank-r map of x onto z, b = E z - M E x."""
        mz = z.mean(0)
        szx = (z - mz).T @ self.xc / self.n
        b = (szx + self.eps * np.eye(len(mz))) @ self.inv  # ridge towards B = I (exact when z = x)
        vals, vecs = np.linalg.eigh(b @ self.s @ b.T)
        p = vecs[:, ::-1][:, :self.rank]
        q = b.T @ p
        return p, q, mz - p @ (q.T @ self.mx), np.clip(vals[::-1], 0, None)

    def predict(self, x, p, q, bias):
        return (x @ q) @ p.T + bias


def _z_step(t, u, lam):
    """argmin_z (t - max(z, 0))^2 + lam (z - u)^2 per element, t >= 0: the better of the z >= 0 and z <= 0 cases."""
    z0 = np.maximum((t + lam * u) / (1 + lam), 0)
    z1 = np.minimum(u, 0)
    c0 = (t - z0) ** 2 + lam * (z0 - u) ** 2
    c1 = t ** 2 + lam * (z1 - u) ** 2
    return np.where(c0 <= c1, z0, z1)


def output_fit(kernel, rank: int, targets, inputs=None, bias=None, *, relu: bool = False,
               iterations: int = ITERATIONS, lambdas: tuple[float, float] = LAMBDAS) -> NonlinearOutputFactors:
    """Fit the layer with kernel `kernel` (and `bias`) at `rank` so that r(M y_hat + b) ~ r(y).

    Args:
        kernel: HWIO or (in, out), BatchNorm already folded in.
        targets: (N, c_out) the original layer's linear responses (bias in, activation out) on the original
            model's inputs.
        inputs: (N, c_out) the same layer's responses at the same positions on the inputs the compressed model
            gives it (None: `targets`, the symmetric fit).
        relu: fit after a ReLU (the layer's own, or one right after it), as the paper; else linear.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> w, x = rng.normal(size=(16, 8)), rng.normal(size=(200, 16))
        >>> f = output_fit(w, 8, x @ w, relu=True)
        >>> bool(np.allclose(f.to_kernel(), w) and f.response_error < 1e-6)
        True
    """
    w, y, x = _pairs(kernel, targets, inputs)
    cout = w.shape[-1]
    rank = check_rank(rank, min(int(np.prod(w.shape[:-1])), cout))
    b0 = check_bias(bias, cout)
    b0 = np.zeros(cout) if b0 is None else b0
    reg = _Regression(x, w, rank)
    t = np.maximum(y, 0) if relu else y
    mt = t.mean(0)
    act = (lambda v: np.maximum(v, 0)) if relu else (lambda v: v)

    def error(p, q, c):  # ||t - r(M x + c)|| / ||t - E t||
        return relative_error(t - mt, act(reg.predict(x, p, q, c)) - mt)

    p, q, c, vals = reg.fit(y)
    best = (error(p, q, c), p, q, c)
    linear_err, done = best[0], 0
    if relu:
        lo, hi = lambdas
        for k in range(iterations):
            lam = lo * (hi / lo) ** (k / max(iterations - 1, 1))
            z = _z_step(t, reg.predict(x, p, q, c), lam)
            p, q, c, _ = reg.fit(z)
            e = error(p, q, c)
            done = k + 1
            if e < best[0]:
                best = (e, p, q, c)
    err, p, q, c = best
    first = (w.reshape(-1, cout) @ q).reshape(w.shape[:-1] + (rank,))
    second = p.T.reshape((1, 1, rank, cout) if w.ndim == 4 else (rank, cout))
    bias_after = c + p @ (q.T @ b0)
    f = NonlinearOutputFactors(first, second, bias_after, 0.0, err, vals, linear_err, bool(relu),
                               inputs is not None, done)
    return dataclasses.replace(f, relative_error=relative_error(w, f.to_kernel()))
