"""Parameter and MAC counts of a Keras model, per layer, from the layers themselves.

MACs are multiply-accumulates per image (batch 1) of the layers that do them: Conv2D, DepthwiseConv2D,
SeparableConv2D, Conv2DTranspose and Dense. BatchNorm, pooling, Add and activations count 0 MACs.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class LayerProfile:
    name: str
    class_name: str
    params: int
    macs: int


@dataclasses.dataclass(frozen=True)
class ModelProfile:
    layers: tuple[LayerProfile, ...]

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    def by_name(self) -> dict[str, LayerProfile]:
        return {layer.name: layer for layer in self.layers}


def _output_spatial(layer) -> list[int]:
    """Output positions (H*W, or 1 for Dense on a vector) for each call of `layer` in the graph."""
    sizes = []
    for node in getattr(layer, "_inbound_nodes", []):
        for out in node.output_tensors:
            shape = tuple(out.shape)
            sizes.append(int(np.prod([d for d in shape[1:-1] if d is not None])) if len(shape) > 2 else 1)
    return sizes or [1]


def layer_macs(layer) -> int:
    """MACs per image of one layer, summed over every place it is called."""
    import keras

    name = type(layer).__name__
    if not layer.built or not getattr(layer, "_inbound_nodes", None):
        return 0
    positions = _output_spatial(layer)
    if isinstance(layer, keras.layers.SeparableConv2D):
        dk = layer.depthwise_kernel.shape  # (kh, kw, cin, mult)
        pk = layer.pointwise_kernel.shape  # (1, 1, cin*mult, cout)
        per = int(np.prod(dk)) + int(np.prod(pk))
    elif isinstance(layer, keras.layers.DepthwiseConv2D):
        per = int(np.prod(layer.kernel.shape))
    elif isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv1D, keras.layers.Conv2DTranspose)):
        k = layer.kernel.shape
        groups = getattr(layer, "groups", 1) or 1
        per = int(np.prod(k))  # kh*kw*(cin/groups)*cout
        if name == "Conv2DTranspose":  # every input position scatters the whole kernel
            ins = []
            for node in layer._inbound_nodes:
                s = tuple(node.input_tensors[0].shape)
                ins.append(int(np.prod(s[1:-1])))
            return sum(i * per for i in ins)
        del groups
    elif isinstance(layer, keras.layers.Dense):
        per = int(np.prod(layer.kernel.shape))
    else:
        return 0
    return sum(p * per for p in positions)


def _walk(model, prefix=""):
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _walk(layer, prefix + layer.name + "/")
        else:
            yield prefix, layer


def profile_model(model) -> ModelProfile:
    """Per-layer parameter and MAC counts, nested models flattened with `outer/inner` names."""
    rows = []
    for prefix, layer in _walk(model):
        params = int(sum(int(np.prod(w.shape)) for w in layer.weights))
        rows.append(LayerProfile(prefix + layer.name, type(layer).__name__, params, layer_macs(layer)))
    return ModelProfile(tuple(rows))
