"""The `output` scheme's fit beyond the linear case (policy `output_fit`): which layers feed a ReLU, and the
asymmetric refit on the compressed model (Zhang et al. TPAMI 2016; the math is `factorize.output_nonlinear`).

Asymmetric: like `thin._fit_asymmetric` for output-channels (He et al.), layer by layer from the input, each
layer is refit on the inputs the already compressed layers before it give, against the original model's
responses at the same positions, so each refit absorbs the error of the layers before it. Unlike thin, the
factor blocks keep their shapes (the ranks are fixed), so one clone is made and its blocks' weights are
replaced in place as the pass goes. Layers inside nested models and shared layers keep the symmetric fit.
"""

from __future__ import annotations

import time

import numpy as np

from edge_lowrank.rewrite import graph as G

FITS = ("linear", "nonlinear", "linear-asymmetric", "nonlinear-asymmetric")
DEFAULT = "linear"


def nonlinear(fit: str) -> bool:
    return fit.startswith("nonlinear")


def asymmetric(fit: str) -> bool:
    return fit.endswith("-asymmetric")


def _plain_relu(op) -> bool:
    import keras

    if isinstance(op, keras.layers.ReLU):
        cfg = op.get_config()
        return cfg.get("max_value") is None and not cfg.get("negative_slope") and not cfg.get("threshold")
    if isinstance(op, keras.layers.Activation):
        return op.activation is keras.activations.relu
    return False


def relu_after(site: G.Site, bn=None) -> bool:
    """Whether only a ReLU's output of this layer's response is read: its own activation is relu, or its
    single node feeds only a plain ReLU (or Activation('relu')), through `bn` when that BatchNorm is folded in.
    Anything else (a residual Add, ReLU6, a BN that stays, a model output) keeps the linear fit."""
    import keras

    layer = site.layer
    if getattr(layer, "activation", None) is keras.activations.relu:
        return True
    if getattr(layer, "activation", None) is not keras.activations.linear or len(site.nodes) != 1:
        return False
    fm = G.functional_of(site.model)
    outputs = {id(t) for t in fm.outputs}
    nodes = G.graph_nodes(site.model)
    node = site.nodes[0]
    while True:
        if any(id(t) in outputs for t in node.output_tensors):
            return False
        nxt = [n for n in nodes if node in n.parent_nodes]
        if len(nxt) != 1:
            return False
        op = nxt[0].operation
        if bn is not None and op is bn:
            node, bn = nxt[0], None
            continue
        return _plain_relu(op)


def refit(model, plan) -> bool:
    """Whether the asymmetric pass refits `plan`: a layer of the top-level model, called once. Until then its
    factors only need the right shapes (only the layers before a layer make its inputs), so `compress` gives
    these the cheap linear fit first."""
    return plan.site.model is model and len(plan.site.nodes) == 1


def _order(model, plans):
    """The plans the pass refits, inputs first (deepest node first in Keras' depth numbering)."""
    fm = G.functional_of(model)
    depth = {id(n): d for d, ns in fm._nodes_by_depth.items() for n in ns}
    return sorted([p for p in plans if refit(model, p)], key=lambda p: -depth.get(id(p.site.nodes[0]), 0))


def paired_responses(plan, model, new_model, calib, response_fn, max_rows: int, batch: int, seed: int = 0):
    """(targets, inputs): the original layer's linear responses on the original model's inputs and on the
    compressed model's (its block's inputs in `new_model`), at the same sampled positions."""
    import keras

    block = new_model.get_layer(plan.site.layer.name)
    calls = [n for n in G.graph_nodes(new_model) if n.operation is block]
    probe_o = keras.Model(model.inputs, plan.site.nodes[0].input_tensors[0])
    probe_t = keras.Model(new_model.inputs, calls[0].input_tensors[0])
    xs = list(calib) if isinstance(calib, (list, tuple)) else [calib]
    n = len(xs[0])
    fn = response_fn(plan, n, seed)
    rows_o, rows_t = [], []
    for i in range(0, n, batch):
        b = [x[i:i + batch] for x in xs]
        xo = np.asarray(probe_o(b, training=False), np.float32)
        xt = np.asarray(probe_t(b, training=False), np.float32)
        yo, yt = fn(xo, xt)
        rows_o.append(yo)
        rows_t.append(yt)
    yo, yt = np.concatenate(rows_o), np.concatenate(rows_t)
    if len(yo) > max_rows:
        pick = np.random.default_rng(seed).choice(len(yo), max_rows, replace=False)
        yo, yt = yo[pick], yt[pick]
    return yo.astype(np.float64), yt.astype(np.float64)


def fit_asymmetric(model, new_model, plans, calib, fit_one, response_fn, max_rows: int, batch: int,
                   verbose: bool = False) -> None:
    """Refit every top-level `output` plan, inputs first, on `new_model`'s inputs to it; update `plan.factors`
    (via `fit_one(plan, targets, inputs)`) and the weights of its block in `new_model`."""
    from edge_lowrank.rewrite.blocks import build_block

    inputs = {id(t) for t in model.inputs}
    for p in _order(model, plans):
        t0 = time.monotonic()
        if id(p.site.nodes[0].input_tensors[0]) in inputs:  # nothing compressed before it: the symmetric fit
            p.factors = fit_one(p, p.responses, None)
            p.fit_note += " (its inputs are the model's: nothing compressed before it)"
        else:
            p.factors = fit_one(p, *paired_responses(p, model, new_model, calib, response_fn, max_rows, batch))
        fresh = build_block(p.site.layer, p.factors, p.input_shape)
        new_model.get_layer(p.site.layer.name).set_weights(fresh.get_weights())
        if verbose:
            print(f"  {p.site.name}: refit on the compressed model's inputs in {time.monotonic() - t0:.1f} s, "
                  f"response error {p.factors.response_error:.4f}", flush=True)
