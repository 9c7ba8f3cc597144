"""Parameter and MAC counts of a Keras model, per layer, from the model's own graph.

MACs are multiply-accumulates per image (batch 1) of the layers that do them: Conv1D/2D/3D (groups included),
DepthwiseConv1D/2D, SeparableConv1D/2D, Conv1D/2D/3DTranspose, Dense (on any rank: positions * in * out)
and Dot or keras.ops.matmul (a batched matmul).
BatchNorm, pooling, Add and activations count 0 MACs.

Calls are read from the nodes of the model's own (functional) graph, never from `layer._inbound_nodes`: a
Keras 3 Sequential model that was built, saved or reloaded keeps one stale node per build there (21 on a
legacy .h5 Sequential's first conv, see NOTES), and summing them over-counted 5.9x. A nested model counts its
layers once per call of it; a shared layer once per call; parameters once per layer object.
`converters.tflite_macs` (converters/macs.py) recounts the MACs from a converted .tflite: an independent check.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from edge_lowrank.errors import ModelError


@dataclasses.dataclass(frozen=True)
class LayerProfile:
    name: str
    class_name: str
    params: int
    macs: int


@dataclasses.dataclass(frozen=True)
class ModelProfile:
    layers: tuple[LayerProfile, ...]
    # True when some MAC-doing layer has an unknown spatial size (a (None, None) input): each unknown
    # dimension then counts as 1, so `macs` is per unit of that size, not per image.
    variable_shape: bool = False

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    def by_name(self) -> dict[str, LayerProfile]:
        return {layer.name: layer for layer in self.layers}


def _positions(shape, channels_first: bool = False) -> tuple[int, bool]:
    """(product of the dimensions between batch and channels, whether one of them is unknown)."""
    shape = tuple(shape)
    inner = shape[2:] if channels_first else shape[1:-1]
    return int(np.prod([d or 1 for d in inner])), any(d is None for d in inner)


def _size(variable) -> int:
    return int(np.prod(variable.shape))


def _node_macs(layer, node) -> tuple[int, bool]:
    """(MACs of one call of `layer` at `node`, whether a spatial size was unknown); (0, False) for layers
    that do no MACs."""
    import keras

    L = keras.layers
    out = node.output_tensors[0].shape
    if type(layer).__name__ == "Matmul":  # keras.ops.matmul in a functional graph: a batched matmul
        x = tuple(node.input_tensors[0].shape)
        pos, var = _positions(tuple(out) + (1,))
        return (pos * int(x[-1] or 1), var) if len(x) > 1 else (0, False)
    if not isinstance(layer, L.Layer):  # other keras.ops (GetItem, Add, ...) do no MACs
        return 0, False
    cf = getattr(layer, "data_format", "channels_last") == "channels_first"
    if isinstance(layer, (L.SeparableConv1D, L.SeparableConv2D)):
        pos, var = _positions(out, cf)  # depthwise (*k, cin, mult) and pointwise (1.., cin*mult, cout)
        return pos * (_size(layer.depthwise_kernel) + _size(layer.pointwise_kernel)), var
    if isinstance(layer, (L.DepthwiseConv1D, L.DepthwiseConv2D)):
        pos, var = _positions(out, cf)  # kernel (*k, cin, mult): k per output channel
        return pos * _size(layer.kernel), var
    if isinstance(layer, (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)):
        pos, var = _positions(node.input_tensors[0].shape, cf)  # every input position scatters the kernel
        return pos * _size(layer.kernel), var
    if isinstance(layer, (L.Conv1D, L.Conv2D, L.Conv3D)):
        pos, var = _positions(out, cf)  # kernel (*k, cin/groups, cout)
        return pos * _size(layer.kernel), var
    if isinstance(layer, L.Dense):
        pos, var = _positions(out)  # (in, out) at every position of a 3-D/4-D input
        return pos * _size(layer.kernel), var
    if isinstance(layer, L.Dot):  # a batched matmul: every output element sums over the contracted axis
        x = tuple(node.input_tensors[0].shape)
        axis = layer.axes if isinstance(layer.axes, int) else layer.axes[0]
        pos, var = _positions(tuple(out) + (1,))
        return pos * int(x[axis % len(x)] or 1), var
    return 0, False


def layer_macs(layer, nodes=None) -> int:
    """MACs per image of `layer` summed over `nodes` (its calls in one model's graph).

    Without `nodes`, the MACs of one call: the layer's latest inbound node, which is the one of the graph
    a Sequential model was last built with (its earlier nodes are stale builds, not calls).
    """
    if not layer.built:
        return 0
    if nodes is None:
        nodes = list(getattr(layer, "_inbound_nodes", None) or [])[-1:]
    return sum(_node_macs(layer, node)[0] for node in nodes)


def _walk(model, prefix=""):
    """(prefix, layer) for every non-model layer, nested models flattened (`outer/inner/`)."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _walk(layer, prefix + layer.name + "/")
        else:
            yield prefix, layer


def profile_model(model) -> ModelProfile:
    """Per-layer parameter and MAC counts, nested models flattened with `outer/inner` names.

    Raises:
        ModelError: not a Keras model, an unbuilt Sequential, or a subclassed model (no graph to read).
    """
    import keras

    if not isinstance(model, keras.Model):
        raise ModelError(f"Expected a Keras model. Received: {type(model).__name__}.")
    rows, seen = [], set()
    state = {"variable": False}
    _profile(model, "", 1, rows, seen, state, top=True)
    return ModelProfile(tuple(rows), state["variable"])


def _profile(model, prefix, times, rows, seen, state, top=False):
    import keras

    from edge_lowrank.rewrite.graph import graph_nodes

    try:
        nodes = graph_nodes(model)
    except ModelError:
        if top:
            raise
        nodes = None  # a subclassed model nested in a graph: its inner calls are not recorded anywhere
    macs, calls, ops = {}, {}, {}
    for node in reversed(nodes or []):  # inputs first: rows of bare ops in graph order
        op = node.operation
        ops.setdefault(id(op), op)
        if isinstance(op, keras.Model):
            calls[id(op)] = calls.get(id(op), 0) + 1
            continue
        m, var = _node_macs(op, node) if getattr(op, "built", True) else (0, False)  # keras.ops have no `built`
        macs[id(op)] = macs.get(id(op), 0) + m
        state["variable"] |= var and m > 0
    for layer in model.layers:
        if isinstance(layer, keras.Model) and nodes is not None:
            _profile(layer, prefix + layer.name + "/", times * calls.get(id(layer), 0), rows, seen, state)
            continue
        params = 0 if id(layer) in seen else int(sum(_size(w) for w in layer.weights))
        seen.add(id(layer))
        rows.append(LayerProfile(prefix + layer.name, type(layer).__name__, params,
                                 times * macs.get(id(layer), 0)))
    listed = {id(layer) for layer in model.layers}
    for key, op in ops.items():  # keras.ops calls (matmul) are graph nodes but not layers
        if key not in listed and macs.get(key):
            rows.append(LayerProfile(prefix + op.name, type(op).__name__, 0, times * macs[key]))
