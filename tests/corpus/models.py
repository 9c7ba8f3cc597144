"""The conformance corpus: real architectures nobody here tuned for, built with seeded random weights at small
input sizes (no downloads: `weights=None`), plus hand-built models for the graph shapes users have.

Shared by `tests/corpus/` and `benchmarks/bench_corpus.py` (loaded by path: tests/ is not a package).
`CORPUS` maps a name to a `CorpusModel`; `build(name)` makes the model, `inputs(model, n)` random inputs
that fit it (images in [0, 1]; a (None, None) input gets 32 x 32).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile

import numpy as np

SEED = 0
CLASSES = 10
VARIABLE_SIZE = 32  # the spatial size fed to a (None, None) input


@dataclasses.dataclass(frozen=True)
class CorpusModel:
    name: str
    build: object  # () -> keras.Model
    heavy: bool  # a keras.applications model: seconds per compress, tens of seconds per int8 export
    layers: tuple[str, ...]  # the layer types it brings to the corpus (what the int8 subset must cover)


def _apps(ctor, size, **kw):
    def build():
        import keras

        keras.utils.set_random_seed(SEED)
        # logits out: a softmax over random-weight logits is nearly uniform and hides output errors
        return getattr(keras.applications, ctor)(input_shape=(size, size, 3), weights=None, classes=CLASSES,
                                                 classifier_activation=None, **kw)
    return build


def _seeded(fn):
    def build():
        import keras

        keras.utils.set_random_seed(SEED)
        return fn(keras, keras.layers)
    build.__name__ = fn.__name__
    return build


def _cnn(keras, L):
    return keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(16, 3, activation="relu"), L.MaxPooling2D(),
                             L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(), L.Flatten(),
                             L.Dense(64, activation="relu"), L.Dense(CLASSES, activation="softmax")],
                            name="seq_cnn")


def _reloaded(suffix):
    def fn(keras, L):
        m = _cnn(keras, L)
        m.predict(np.zeros((1, 28, 28, 1), "float32"), verbose=0)  # one more build: stale nodes, as users have
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "m" + suffix)
            m.save(path)
            return keras.models.load_model(path, compile=False)
    fn.__name__ = f"sequential{suffix.replace('.', '_')}"
    return fn


def _conv_relu_bn(keras, L):
    x = inp = keras.Input((32, 32, 3))
    for f, pool in ((16, L.MaxPooling2D), (32, L.AveragePooling2D)):
        x = L.Conv2D(f, 3, padding="same")(x)
        x = L.ReLU()(x)
        x = L.BatchNormalization()(x)
        x = pool(2)(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(CLASSES)(x), name="conv_relu_bn")


def _bn_params(model):
    """Non-trivial BatchNorm statistics, so that folding them is tested (fresh ones are the identity)."""
    rng = np.random.default_rng(SEED)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.1, b.shape),
                               rng.normal(0, 0.1, m.shape), rng.uniform(0.5, 1.5, v.shape)])
    return model


def _nested(keras, L):
    inner = keras.Sequential([keras.Input((16, 16, 16)), L.Conv2D(24, 3, padding="same", activation="relu"),
                              L.Conv2D(16, 3, padding="same")], name="inner_seq")
    i2 = keras.Input((16, 16, 16))
    block = keras.Model(i2, L.Add()([i2, L.Conv2D(16, 3, padding="same")(i2)]), name="inner_fn")
    x = inp = keras.Input((32, 32, 3))
    x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    x = block(inner(x))
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(CLASSES)(x), name="nested")


def _shared(keras, L):
    conv = L.Conv2D(16, 3, padding="same", activation="relu", name="shared_conv")
    inp = keras.Input((24, 24, 16))
    x = L.Conv2D(16, 1)(inp)
    y = conv(conv(x))  # one layer, two calls in a chain
    z = L.GlobalAveragePooling2D()(L.Add()([x, y]))
    return keras.Model(inp, L.Dense(CLASSES)(z), name="shared")


def _preprocessing(keras, L):
    norm = L.Normalization(mean=[0.5, 0.4, 0.3], variance=[0.05, 0.06, 0.07])
    x = inp = keras.Input((32, 32, 3))
    x = L.Rescaling(1 / 255.0)(x)
    x = norm(x)
    x = L.Conv2D(16, 3, activation="relu")(x)
    x = L.Conv2D(32, 3, strides=2, activation="relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(CLASSES)(x), name="preprocessing")


def _mini_xception(keras, L):
    """The shape of the emotion model users fed the tool (issue 12): SeparableConv2D, BN, residual Add."""
    x = inp = keras.Input((48, 48, 1))
    x = L.Conv2D(8, 3, use_bias=False)(x)
    x = L.Activation("relu")(L.BatchNormalization()(x))
    for f in (16, 32):
        res = L.BatchNormalization()(L.Conv2D(f, 1, strides=2, padding="same", use_bias=False)(x))
        x = L.SeparableConv2D(f, 3, padding="same", use_bias=False)(x)
        x = L.Activation("relu")(L.BatchNormalization()(x))
        x = L.SeparableConv2D(f, 3, padding="same", use_bias=False)(x)
        x = L.BatchNormalization()(x)
        x = L.Add()([L.MaxPooling2D(3, strides=2, padding="same")(x), res])
    x = L.Conv2D(7, 3, padding="same")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Activation("softmax")(x), name="mini_xception")


def _convnext_block(keras, L):
    """ConvNeXt's block at toy width: 7x7 depthwise, LayerNormalization, Dense on a 4-D tensor, GELU."""
    x = inp = keras.Input((32, 32, 3))
    x = L.LayerNormalization(epsilon=1e-6)(L.Conv2D(24, 4, strides=4)(x))
    for _ in range(2):
        y = L.DepthwiseConv2D(7, padding="same")(x)
        y = L.LayerNormalization(epsilon=1e-6)(y)
        y = L.Dense(96, activation="gelu")(y)
        x = L.Add()([x, L.Dense(24)(y)])
    x = L.LayerNormalization(epsilon=1e-6)(L.GlobalAveragePooling2D()(x))
    return keras.Model(inp, L.Dense(CLASSES)(x), name="convnext_block")


def _mlp(keras, L):
    return keras.Sequential([keras.Input((64,)), L.Dense(128, activation="relu"), L.Dense(96, activation="relu"),
                             L.Dense(CLASSES)], name="mlp")


def _conv1d(keras, L):
    x = inp = keras.Input((64, 8))
    x = L.Conv1D(32, 3, padding="same", activation="relu")(x)
    for d in (1, 2, 4):
        y = L.Conv1D(32, 3, padding="causal", dilation_rate=d, activation="relu")(x)
        y = L.Conv1D(32, 1)(y)
        x = L.Add()([x, y])
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(inp, L.Dense(CLASSES)(x), name="conv1d_tcn")


def _unet(keras, L):
    x = inp = keras.Input((32, 32, 3))
    e1 = L.Conv2D(16, 3, padding="same", activation="relu")(x)
    e2 = L.Conv2D(32, 3, padding="same", activation="relu")(L.MaxPooling2D()(e1))
    b = L.Conv2D(32, 3, padding="same", activation="relu")(L.MaxPooling2D()(e2))
    d2 = L.Concatenate()([L.UpSampling2D()(b), e2])
    d2 = L.Conv2D(32, 3, padding="same", activation="relu")(d2)
    d1 = L.Conv2DTranspose(16, 2, strides=2, padding="same")(d2)
    d1 = L.Conv2D(16, 3, padding="same", activation="relu")(L.Concatenate()([d1, e1]))
    return keras.Model(inp, L.Conv2D(2, 1, activation="sigmoid")(d1), name="unet")


def _two_inputs(keras, L):
    img, vec = keras.Input((24, 24, 3), name="image"), keras.Input((12,), name="features")
    x = L.Conv2D(16, 3, activation="relu")(img)
    x = L.Conv2D(24, 3, strides=2, activation="relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    v = L.Dense(24, activation="relu")(vec)
    x = L.Concatenate()([x, v])
    return keras.Model([img, vec], L.Dense(CLASSES)(x), name="two_inputs")


def _two_outputs(keras, L):
    x = inp = keras.Input((24, 24, 3))
    x = L.Conv2D(16, 3, activation="relu")(x)
    x = L.Conv2D(32, 3, strides=2, activation="relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    cls = L.Dense(CLASSES, activation="softmax", name="cls")(x)
    box = L.Dense(4, name="box")(L.Dense(32, activation="relu")(x))
    return keras.Model(inp, [cls, box], name="two_outputs")


def _variable(keras, L):
    x = inp = keras.Input((None, None, 3))
    x = L.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = L.Conv2D(32, 3, strides=2, padding="same", activation="relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(CLASSES)(x), name="variable_size")


_H = [
    ("sequential_keras", _reloaded(".keras"), ("Conv2D", "Dense", "MaxPooling2D", "Flatten")),
    ("sequential_h5", _reloaded(".h5"), ("Conv2D", "Dense")),
    ("conv_relu_bn", lambda k, L: _bn_params(_conv_relu_bn(k, L)),
     ("Conv2D", "ReLU", "BatchNormalization", "AveragePooling2D")),
    ("nested", _nested, ("Conv2D", "Add", "nested Sequential", "nested Functional")),
    ("shared_layer", _shared, ("Conv2D", "shared Conv2D")),
    ("preprocessing", _preprocessing, ("Rescaling", "Normalization", "Conv2D")),
    ("mini_xception", lambda k, L: _bn_params(_mini_xception(k, L)), ("SeparableConv2D", "strided 1x1 Conv2D")),
    ("convnext_block", _convnext_block, ("LayerNormalization", "7x7 DepthwiseConv2D", "Dense on 4-D", "gelu")),
    ("mlp", _mlp, ("Dense",)),
    ("conv1d_dilated", _conv1d, ("Conv1D", "dilated Conv1D", "GlobalAveragePooling1D")),
    ("unet", _unet, ("UpSampling2D", "Concatenate", "Conv2DTranspose")),
    ("two_inputs", _two_inputs, ("two inputs", "Concatenate")),
    ("two_outputs", _two_outputs, ("two outputs",)),
    ("variable_size", _variable, ("(None, None) input",)),
]
_A = [
    ("mobilenet", _apps("MobileNet", 32, alpha=0.25), ("DepthwiseConv2D", "ReLU6", "ZeroPadding2D")),
    ("mobilenet_v2", _apps("MobileNetV2", 32, alpha=0.35), ("DepthwiseConv2D", "Add")),
    ("mobilenet_v3_small", _apps("MobileNetV3Small", 32, alpha=0.75),
     ("Rescaling", "hard-swish", "squeeze-excite Multiply")),
    ("efficientnet_b0", _apps("EfficientNetB0", 32), ("Normalization", "swish", "squeeze-excite", "Dropout")),
    ("resnet50", _apps("ResNet50", 32), ("Conv2D", "BatchNormalization", "Add")),
    ("densenet121", _apps("DenseNet121", 32), ("Concatenate", "AveragePooling2D")),
    ("xception", _apps("Xception", 72), ("SeparableConv2D",)),
    ("vgg16", _apps("VGG16", 32), ("Conv2D", "Dense")),
    ("convnext_tiny", _apps("ConvNeXtTiny", 32), ("LayerNormalization", "7x7 DepthwiseConv2D", "Dense on 4-D")),
]

CORPUS = {name: CorpusModel(name, _seeded(fn), False, kinds) for name, fn, kinds in _H}
CORPUS.update({name: CorpusModel(name, fn, True, kinds) for name, fn, kinds in _A})
LIGHT = tuple(n for n, c in CORPUS.items() if not c.heavy)
HEAVY = tuple(n for n, c in CORPUS.items() if c.heavy)


def build(name: str):
    """The corpus model `name`, rebuilt from its seed (the same weights every time)."""
    return CORPUS[name].build()


def input_shapes(model) -> list[tuple[int, ...]]:
    """Each input's shape without the batch, a None spatial size replaced by `VARIABLE_SIZE`."""
    return [tuple(VARIABLE_SIZE if d is None else int(d) for d in t.shape[1:]) for t in model.inputs]


def inputs(model, n: int = 4, seed: int = SEED):
    """Random inputs in [0, 1] for every input of `model`: one array, or a list for several inputs."""
    rng = np.random.default_rng(seed)
    xs = [rng.random((n,) + s, dtype=np.float32) for s in input_shapes(model)]
    return xs[0] if len(xs) == 1 else xs
