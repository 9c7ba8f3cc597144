"""Reading a Keras model's graph: which layers can be factorized, where they are called, which conv feeds
a BatchNormalization that can be folded, and what a layer sees on calibration data.

Only Sequential and Functional models (nested ones included) have a graph to read; subclassed models do not.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from edge_lowrank.errors import DataError, ModelError


@dataclasses.dataclass
class Site:
    """One layer of one (sub)model's graph, with the nodes where it is called."""

    layer: object
    model: object
    prefix: str
    nodes: list

    @property
    def name(self) -> str:
        return self.prefix + self.layer.name


def functional_of(model):
    """The Functional graph behind `model` (a Sequential keeps one in `_functional`)."""
    import keras

    if isinstance(model, keras.Sequential):
        if getattr(model, "_functional", None) is None:
            raise ModelError(f"Sequential model '{model.name}' is not built (no input shape): give it a "
                             f"keras.Input first, or call it once on data.")
        return model._functional
    if hasattr(model, "_nodes_by_depth") and hasattr(model, "_operations"):
        return model
    raise ModelError(f"Model '{model.name}' is a subclassed {type(model).__name__}: only Sequential and "
                     f"Functional models have a graph that can be rewritten.")


def graph_nodes(model) -> list:
    fm = functional_of(model)
    return [n for depth in sorted(fm._nodes_by_depth) for n in fm._nodes_by_depth[depth]]


def walk(model, prefix: str = "", feeder=None):
    """Yield (model, prefix, feeder) for `model` and every nested model; feeder is (parent, node) or None."""
    import keras

    yield model, prefix, feeder
    nodes = graph_nodes(model)
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            calls = [n for n in nodes if n.operation is layer]
            yield from walk(layer, prefix + layer.name + "/", (model, calls[0]) if len(calls) == 1 else None)


def sites(model, prefix: str = "") -> list[Site]:
    """Every non-model layer of `model` with its nodes in that model's graph."""
    import keras

    nodes = graph_nodes(model)
    out = []
    for layer in model.layers:
        if isinstance(layer, (keras.Model, keras.layers.InputLayer)):
            continue
        out.append(Site(layer, model, prefix, [n for n in nodes if n.operation is layer]))
    return out


def layer_calls(root) -> dict[int, int]:
    """{id(layer): calls} over `root`'s graph and every nested model's. Not `layer._inbound_nodes`: a Sequential
    that was built, saved or reloaded keeps a stale node there per build (profile.py, NOTES)."""
    calls: dict[int, int] = {}
    for m, _, _ in walk(root):
        for node in graph_nodes(m):
            calls[id(node.operation)] = calls.get(id(node.operation), 0) + 1
    return calls


def foldable_batchnorm(model, calls: dict[int, int] | None = None) -> dict[int, object]:
    """{id(conv): bn} for each Conv2D (linear activation, called once in the whole model: `calls` of the root,
    `layer_calls`) whose only consumer is a BatchNormalization over the channel axis, called once without
    extra arguments."""
    import keras

    calls = layer_calls(model) if calls is None else calls
    nodes = graph_nodes(model)
    outputs = {id(t) for t in model.outputs}
    pairs = {}
    for node in nodes:
        bn = node.operation
        if not isinstance(bn, keras.layers.BatchNormalization):
            continue
        if bn.axis not in (-1, 3) or len([n for n in nodes if n.operation is bn]) != 1:
            continue
        if any(v is not None for v in node.arguments.kwargs.values()) or len(node.parent_nodes) != 1:
            continue
        parent = node.parent_nodes[0]
        conv = parent.operation
        if type(conv) is not keras.layers.Conv2D or conv.get_config()["activation"] != "linear":
            continue
        conv_nodes = [n for n in nodes if n.operation is conv]
        consumers = [n for n in nodes if parent in n.parent_nodes]
        if len(conv_nodes) != 1 or len(consumers) != 1 or id(parent.output_tensors[0]) in outputs:
            continue
        if calls.get(id(conv), 0) != 1:  # also called by an enclosing or nested model
            continue
        pairs[id(conv)] = bn
    return pairs


def fold_batchnorm(kernel: np.ndarray, bias: np.ndarray | None, bn) -> tuple[np.ndarray, np.ndarray]:
    """Kernel and bias of conv followed by `bn` (inference mode): W*s, (b - mean)*s + beta,
    s = gamma / sqrt(var + eps)."""
    c = kernel.shape[-1]
    gamma = np.asarray(bn.gamma.numpy(), np.float64) if bn.scale else np.ones(c)
    beta = np.asarray(bn.beta.numpy(), np.float64) if bn.center else np.zeros(c)
    mean = np.asarray(bn.moving_mean.numpy(), np.float64)
    var = np.asarray(bn.moving_variance.numpy(), np.float64)
    s = gamma / np.sqrt(var + bn.epsilon)
    b = np.zeros(c) if bias is None else bias
    return kernel * s, (b - mean) * s + beta


def model_inputs_on(models_feeders: dict, model, x: np.ndarray, batch_size: int = 64):
    """What `model` (the top one or a nested one called once) receives when the top model sees `x`."""
    import keras

    feeder = models_feeders.get(id(model))
    if feeder is None:
        return x
    parent, node = feeder
    px = model_inputs_on(models_feeders, parent, x, batch_size)
    if parent.inputs is None or len(node.input_tensors) != 1:
        raise DataError(f"Cannot trace calibration data into nested model '{model.name}'.")
    sub = keras.Model(parent.inputs, node.input_tensors[0])
    return sub.predict(px, batch_size=batch_size, verbose=0)


def layer_inputs(site: Site, models_feeders: dict, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The input of `site`'s layer (its first call) when the top model sees `x`."""
    import keras

    if site.model.inputs is None or len(site.nodes) < 1:
        raise DataError(f"Layer '{site.name}' has no call in its model's graph to collect data from.")
    mx = model_inputs_on(models_feeders, site.model, x, batch_size)
    node = site.nodes[0]
    t = node.input_tensors[0]
    for i, inp in enumerate(site.model.inputs):
        if t is inp:  # fed straight from a model input: that input's data (one of several when a list)
            return mx[i] if isinstance(mx, (list, tuple)) else mx
    return keras.Model(site.model.inputs, t).predict(mx, batch_size=batch_size, verbose=0)
