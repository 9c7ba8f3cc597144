"""What rank selection knows about each scheme: full ranks, the spectra ranks are read from, and the
parameter and MAC cost of a layer factorized at given ranks. No Keras: a layer is described by `LayerSpec`.

Costs follow the factor layers the rewriter builds (strides split as in `edge_lowrank.rewrite`), counted like
`edge_lowrank.profile`: MACs per image summed over every call of the layer, parameters including the bias
on the last factor.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from edge_lowrank.factorize.spatial import spatial_matrix
from edge_lowrank.factorize.tucker2 import mode_spectra

SCHEMES = ("spatial", "channel", "tucker2", "weight-svd", "output", "cp", "tucker2-spatial")


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """A layer as rank selection sees it.

    `kind` is "conv" (kernel HWIO), "dense" (kernel (in, out)) or "separable" (kernel is the pointwise
    (1, 1, c_in*m, c_out); `depthwise_shape` the depthwise kernel, kept as is). `calls` holds
    ((in_h, in_w), (out_h, out_w)) per call of the layer; for Dense (positions, 1) both times.
    """

    name: str
    kind: str
    kernel_shape: tuple[int, ...]
    calls: tuple[tuple[tuple[int, int], tuple[int, int]], ...]
    use_bias: bool
    depthwise_shape: tuple[int, ...] | None = None
    strides: tuple[int, int] = (1, 1)
    padding: str = "valid"
    n_responses: int | None = None  # calibration responses behind `output`'s eigenvalues (for VBMF's shape)

    @property
    def is_pointwise(self) -> bool:
        return self.kind != "conv" or tuple(self.kernel_shape[:2]) == (1, 1)

    def matrix_shape(self) -> tuple[int, int]:
        return int(np.prod(self.kernel_shape[:-1])), int(self.kernel_shape[-1])


def full_ranks(scheme: str, spec: LayerSpec) -> tuple[int, ...]:
    """The largest meaningful rank of each rank entry of `scheme` for this layer."""
    if scheme in ("weight-svd", "channel", "output") or spec.kind != "conv":
        return (min(spec.matrix_shape()),)
    kh, kw, cin, cout = spec.kernel_shape
    if scheme == "spatial":
        return (min(kh * cin, kw * cout),)
    if scheme == "tucker2":
        return (min(cin, kh * kw * cout), min(cout, kh * kw * cin))
    if scheme == "tucker2-spatial":
        r1, r2 = min(cin, kh * kw * cout), min(cout, kh * kw * cin)
        return (r1, r2, min(kh * r1, kw * r2))
    if scheme == "cp":
        return (kh * kw * min(cin, cout),)
    raise ValueError(f"Unknown scheme {scheme!r}. Expected one of {SCHEMES}.")


def nominal_ranks(scheme: str, spec: LayerSpec) -> tuple[int, ...]:
    """What `rank_fraction` is a fraction of: the full rank, except for cp whose CP-rank bound
    k_h*k_w*min(c_in, c_out) is far above any useful rank; there it is min(c_in, c_out)."""
    if scheme == "cp" and spec.kind == "conv":
        return (min(spec.kernel_shape[2:]),)
    return full_ranks(scheme, spec)


def spectra(scheme: str, kernel: np.ndarray, eigenvalues=None,
            n_samples: int | None = None) -> list[tuple[np.ndarray, tuple[int, int]]]:
    """(squared singular values, matrix shape) per rank entry: what energy and VBMF rank selection read.

    `eigenvalues` is the response covariance spectrum for `output` (data-driven). For tucker2-spatial the
    third entry is filled in by `core_spectrum` once r1 and r2 are known.
    """
    w = np.asarray(kernel, np.float64)
    if scheme == "output":
        if eigenvalues is None:
            raise ValueError("The output scheme reads its ranks from response eigenvalues; none given.")
        n = int(n_samples or len(eigenvalues))
        # covariance eigenvalues * N are the squared singular values of the centred (N, c_out) responses
        return [(np.asarray(eigenvalues, np.float64) * n, (n, len(eigenvalues)))]
    if scheme in ("weight-svd", "channel", "cp") or w.ndim == 2:
        mat = w.reshape(-1, w.shape[-1])
        return [(np.linalg.svd(mat, compute_uv=False) ** 2, mat.shape)]
    if scheme == "spatial":
        mat = spatial_matrix(w)
        return [(np.linalg.svd(mat, compute_uv=False) ** 2, mat.shape)]
    kh, kw, cin, cout = w.shape
    ein, eout = mode_spectra(w)
    return [(ein, (cin, kh * kw * cout)), (eout, (cout, kh * kw * cin))]


def core_spectrum(kernel: np.ndarray, r1: int, r2: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Spatial spectrum of the truncated-HOSVD Tucker-2 core at (r1, r2) (tucker2-spatial's third rank)."""
    w = np.asarray(kernel, np.float64)
    cin, cout = w.shape[2:]
    u_in = np.linalg.eigh(_gram(w, 2))[1][:, ::-1][:, :r1]
    u_out = np.linalg.eigh(_gram(w, 3))[1][:, ::-1][:, :r2]
    core = np.einsum("ijcn,ca,nb->ijab", w, u_in, u_out, optimize=True)
    mat = spatial_matrix(core)
    return np.linalg.svd(mat, compute_uv=False) ** 2, mat.shape


def _gram(w, mode):
    u = np.moveaxis(w, mode, 0).reshape(w.shape[mode], -1)
    return u @ u.T


def original_cost(spec: LayerSpec) -> tuple[int, int]:
    """(parameters, MACs) of the layer as it is."""
    k = int(np.prod(spec.kernel_shape))
    bias = spec.kernel_shape[-1] if spec.use_bias else 0
    dw = int(np.prod(spec.depthwise_shape)) if spec.depthwise_shape else 0
    macs = sum(int(np.prod(o)) * (k + dw) for _, o in spec.calls)
    return k + dw + bias, macs


def cost(scheme: str, spec: LayerSpec, ranks: tuple[int, ...]) -> tuple[int, int]:
    """(parameters, MACs) of the factor layers the rewriter builds for `scheme` at `ranks`."""
    bias = spec.kernel_shape[-1] if spec.use_bias else 0
    if scheme in ("weight-svd", "channel", "output") or spec.kind != "conv":
        (r,) = ranks
        m, n = spec.matrix_shape()
        dw = int(np.prod(spec.depthwise_shape)) if spec.depthwise_shape else 0
        per = r * (m + n) + dw
        return per + bias, sum(int(np.prod(o)) * per for _, o in spec.calls)
    kh, kw, cin, cout = spec.kernel_shape
    params, macs = 0, 0
    if scheme == "spatial":
        (r,) = ranks
        params = kh * cin * r + kw * r * cout
        for (h, w), (ho, wo) in spec.calls:
            macs += ho * w * kh * cin * r + ho * wo * kw * r * cout
    elif scheme == "tucker2":
        r1, r2 = ranks
        params = cin * r1 + kh * kw * r1 * r2 + r2 * cout
        for (h, w), (ho, wo) in spec.calls:
            macs += h * w * cin * r1 + ho * wo * (kh * kw * r1 * r2 + r2 * cout)
    elif scheme == "cp":
        (r,) = ranks
        params = cin * r + kh * r + kw * r + r * cout
        sh = spec.strides[0]
        for (h, w), (ho, wo) in spec.calls:
            # with strides the vertical depthwise runs at stride 1 on explicitly padded rows (see rewrite.blocks)
            rows = ho if spec.strides == (1, 1) else (
                h + (max((ho - 1) * sh + kh - h, 0) if spec.padding == "same" else 0) - kh + 1)
            macs += h * w * cin * r + rows * w * kh * r + ho * wo * (kw * r + r * cout)
    elif scheme == "tucker2-spatial":
        r1, r2, r3 = ranks
        params = cin * r1 + kh * r1 * r3 + kw * r3 * r2 + r2 * cout
        for (h, w), (ho, wo) in spec.calls:
            macs += h * w * cin * r1 + ho * w * kh * r1 * r3 + ho * wo * (kw * r3 * r2 + r2 * cout)
    else:
        raise ValueError(f"Unknown scheme {scheme!r}. Expected one of {SCHEMES}.")
    return params + bias, macs
