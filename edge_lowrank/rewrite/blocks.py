"""Factor kernels -> a nested `keras.Sequential` of stock layers (Conv2D, DepthwiseConv2D, Dense).

The block takes the original layer's name, its factors are named `<name>_<part>`. Strides are split between
factors so each keeps the original's output grid: spatial/tucker2-spatial/cp put (s_h, 1) on the vertical and
(1, s_w) on the horizontal factor, channel/output/tucker2 put the stride on the k x k factor, weight-svd on
the first 1x1. Per-dimension 'same' padding is unchanged by that split, so full-rank factors reproduce the
layer exactly. The activation and the bias go on the last factor.
"""

from __future__ import annotations

import numpy as np

from edge_lowrank import factorize as F


def run_scheme(scheme: str, kind: str, kernel, ranks, bias, *, responses=None, cp_n_iter_max=100,
               cp_time_budget_s=None):
    """Factorize one layer's kernel for `scheme` at `ranks` (a tuple from `rank.choose_rank`)."""
    if kind != "conv" or scheme in ("weight-svd", "channel") and kernel.shape[:2] == (1, 1) \
            and kernel.ndim == 4:
        if scheme == "output":
            return F.output(kernel, ranks[0], responses, bias)
        return F.weight_svd(kernel, ranks[0], bias)
    if scheme == "spatial":
        return F.spatial(kernel, ranks[0], bias)
    if scheme == "channel":
        return F.channel(kernel, ranks[0], bias)
    if scheme == "output":
        return F.output(kernel, ranks[0], responses, bias)
    if scheme == "tucker2":
        return F.tucker2(kernel, ranks, bias)
    if scheme == "tucker2-spatial":
        return F.tucker2_spatial(kernel, ranks, bias)
    if scheme == "cp":
        return F.cp(kernel, ranks[0], bias, n_iter_max=cp_n_iter_max, time_budget_s=cp_time_budget_s)
    if scheme == "weight-svd":
        return F.weight_svd(kernel, ranks[0], bias)
    raise ValueError(f"Unknown scheme {scheme!r}.")


def same_padding(size: int, k: int, s: int) -> tuple[int, int]:
    """Keras/TF 'same' padding (before, after) of one dimension, dilation 1."""
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)  # Conv1D's (s,) stays one entry


def build_block(layer, factors, input_shape, depthwise_kernel=None):
    """A `keras.Sequential` named like `layer` that computes `layer` from `factors`.

    Args:
        layer: the original Conv2D, Conv1D (its factors as k x 1 kernels), Dense or SeparableConv2D.
        factors: a result of `run_scheme`.
        input_shape: the layer's input shape without the batch (None for unknown dimensions).
        depthwise_kernel: SeparableConv2D's depthwise kernel (kept as a DepthwiseConv2D).
    """
    import keras

    cfg = layer.get_config()
    name, act, dtype = layer.name, cfg["activation"], layer.dtype_policy
    bias = factors.bias
    use_bias = bias is not None
    L = keras.layers
    parts = []  # (layer, weights)

    one_d = isinstance(layer, L.Conv1D)  # factors come as k x 1 Conv2D kernels: build Conv1D layers

    def conv(suffix, kernel, strides=(1, 1), padding="valid", dilation=(1, 1), last=False):
        k = np.asarray(kernel, np.float32)
        common = dict(use_bias=last and use_bias, activation=act if last else None, name=f"{name}_{suffix}",
                      dtype=dtype)
        if one_d:
            k = k[:, 0]
            lyr = L.Conv1D(k.shape[2], k.shape[0], strides=strides[0], padding=padding,
                           dilation_rate=dilation[0], **common)
        else:
            lyr = L.Conv2D(k.shape[3], k.shape[:2], strides=strides, padding=padding, dilation_rate=dilation,
                           **common)
        parts.append((lyr, [k] + ([np.asarray(bias, np.float32)] if last and use_bias else [])))

    def dw(suffix, kernel, strides, padding, dilation):
        k = np.asarray(kernel, np.float32)
        lyr = L.DepthwiseConv2D(k.shape[:2], strides=strides, padding=padding, dilation_rate=dilation,
                                depth_multiplier=k.shape[3], use_bias=False, name=f"{name}_{suffix}",
                                dtype=dtype)
        parts.append((lyr, [k]))

    if isinstance(layer, L.Dense):
        first, second = factors.factor_kernels()
        parts.append((L.Dense(first.shape[1], use_bias=False, name=f"{name}_in", dtype=dtype),
                      [np.asarray(first, np.float32)]))
        parts.append((L.Dense(second.shape[1], use_bias=use_bias, activation=act, name=f"{name}_out",
                              dtype=dtype),
                      [np.asarray(second, np.float32)] + ([np.asarray(bias, np.float32)] if use_bias else [])))
    else:
        (sh, sw), (dh, dwl) = _pair(cfg["strides"]) + (1,) * one_d, _pair(cfg["dilation_rate"]) + (1,) * one_d
        pad = cfg["padding"]
        if isinstance(layer, L.SeparableConv2D):
            dw("depthwise", depthwise_kernel, (sh, sw), pad, (dh, dwl))
            first, second = factors.factor_kernels()
            conv("pw_in", first)
            conv("pw_out", second, last=True)
        elif isinstance(factors, F.SpatialFactors):
            conv("vertical", factors.vertical, (sh, 1), pad, (dh, 1))
            conv("horizontal", factors.horizontal, (1, sw), pad, (1, dwl), last=True)
        elif isinstance(factors, (F.ChannelFactors, F.OutputFactors, F.SVDFactors)):
            first, second = factors.factor_kernels()
            conv("in", first, (sh, sw), pad, (dh, dwl))
            conv("out", second, last=True)
        elif isinstance(factors, F.Tucker2Factors):
            conv("in", factors.first)
            conv("core", factors.core, (sh, sw), pad, (dh, dwl))
            conv("out", factors.last, last=True)
        elif isinstance(factors, F.Tucker2SpatialFactors):
            conv("in", factors.first)
            conv("vertical", factors.vertical, (sh, 1), pad, (dh, 1))
            conv("horizontal", factors.horizontal, (1, sw), pad, (1, dwl))
            conv("out", factors.last, last=True)
        elif isinstance(factors, F.CPFactors) and (sh, sw) == (1, 1):
            conv("in", factors.first)
            dw("vertical", factors.vertical, (1, 1), pad, (dh, 1))
            dw("horizontal", factors.horizontal, (1, 1), pad, (1, dwl))
            conv("out", factors.last, last=True)
        elif isinstance(factors, F.CPFactors):
            # TF's depthwise conv takes equal strides only: pad explicitly, run the vertical factor at stride 1
            # and let the horizontal one take (s, s); its 1-row kernel then picks exactly the strided rows.
            kh, kw = factors.vertical.shape[0], factors.horizontal.shape[1]
            (pt, pb), (pl, pr) = same_padding(input_shape[0], kh, sh) if pad == "same" else (0, 0), \
                same_padding(input_shape[1], kw, sw) if pad == "same" else (0, 0)
            conv("in", factors.first)
            if pt or pb:
                parts.append((L.ZeroPadding2D(((pt, pb), (0, 0)), name=f"{name}_pad_h"), []))
            dw("vertical", factors.vertical, (1, 1), "valid", (1, 1))
            if pl or pr:
                parts.append((L.ZeroPadding2D(((0, 0), (pl, pr)), name=f"{name}_pad_w"), []))
            dw("horizontal", factors.horizontal, (sh, sw), "valid", (1, 1))
            conv("out", factors.last, last=True)
        else:  # pragma: no cover - run_scheme returns only the types above
            raise TypeError(f"Unknown factors {type(factors).__name__}.")
    block = keras.Sequential([keras.Input(shape=tuple(input_shape), dtype=layer.dtype)] + [p for p, _ in parts],
                             name=name)
    for lyr, weights in parts:
        lyr.set_weights(weights)
    return block
