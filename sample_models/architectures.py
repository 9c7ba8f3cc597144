"""Builders of the sample models: a ResNet-style CNN and a VGG-style CNN for 28x28x1 Fashion-MNIST images.

Both take a flexible batch (``keras.Input((28, 28, 1))``, batch None) and end in a softmax over the 10
classes, as users' models usually do. Exporters rebuild them with a static batch of 1
(`edge_lowrank.modelio.with_static_batch`).

Layer names read as ``stage1_block1_conv1``, ``stage1_block1_bn1``, ``stage1_block1_shortcut``... so that
reports stay legible.
"""

from __future__ import annotations

import keras
from keras import layers

INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10


def _conv_bn_relu(x, filters, kernel_size, strides, name):
    """Conv2D `name` (no bias), then BatchNorm `name_bn`, then ReLU `name_relu`."""
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=False,
                      kernel_initializer="he_normal", name=name)(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _basic_block(x, filters, strides, name):
    """A ResNet basic block: 3x3 conv-BN-ReLU, 3x3 conv-BN, Add with the shortcut, ReLU.

    The shortcut is a strided 1x1 conv + BN (a projection) where the shape changes, the identity otherwise.
    """
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=False, kernel_initializer="he_normal",
                                 name=f"{name}_shortcut")(x)
        shortcut = layers.BatchNormalization(name=f"{name}_shortcut_bn")(shortcut)
    y = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False,
                      kernel_initializer="he_normal", name=f"{name}_conv1")(x)
    y = layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal",
                      name=f"{name}_conv2")(y)
    y = layers.BatchNormalization(name=f"{name}_bn2")(y)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)


def build_resnet_fmnist(widths=(64, 128), blocks_per_stage=1, stem_filters=32) -> keras.Model:
    """A ResNet-style CNN: 3x3 stem at 28x28, then one stride-2 stage per entry of `widths`.

    Default: stem 32 channels at 28x28; stage 1 at 14x14 with 64 channels; stage 2 at 7x7 with 128
    channels; one basic block per stage (3x3 convs, BatchNorm, residual Add, 1x1 projection shortcuts);
    global average pooling; Dense softmax head. About 0.29M parameters and 22.7M MACs per image.

    Example:
    >>> model = build_resnet_fmnist()
    >>> model.output_shape
    (None, 10)
    """
    inputs = keras.Input(INPUT_SHAPE, name="image")
    x = _conv_bn_relu(inputs, stem_filters, 3, 1, "stem_conv")
    for s, filters in enumerate(widths, start=1):
        for b in range(1, blocks_per_stage + 1):
            x = _basic_block(x, filters, 2 if b == 1 else 1, f"stage{s}_block{b}")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="resnet_fmnist")


def build_vgg_fmnist(dense_units=512, dropout=0.5) -> keras.Model:
    """A VGG-style CNN with a large Dense block after Flatten.

    conv 32 @28x28, max-pool; conv 64, conv 64 @14x14, max-pool; conv 128 @7x7; Flatten (6,272 features);
    Dense `dense_units` ReLU (3.2M weights at 512 units: where weight SVD matters); dropout; Dense softmax.
    Each 3x3 conv is followed by BatchNorm and ReLU. About 3.3M parameters and 17.9M MACs per image.

    Example:
    >>> model = build_vgg_fmnist()
    >>> model.get_layer("fc1").units
    512
    """
    inputs = keras.Input(INPUT_SHAPE, name="image")
    x = _conv_bn_relu(inputs, 32, 3, 1, "block1_conv1")
    x = layers.MaxPooling2D(2, name="block1_pool")(x)
    x = _conv_bn_relu(x, 64, 3, 1, "block2_conv1")
    x = _conv_bn_relu(x, 64, 3, 1, "block2_conv2")
    x = layers.MaxPooling2D(2, name="block2_pool")(x)
    x = _conv_bn_relu(x, 128, 3, 1, "block3_conv1")
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(dense_units, activation="relu", name="fc1")(x)
    x = layers.Dropout(dropout, name="fc1_dropout")(x)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="vgg_fmnist")


def build_seqbn_fmnist(conv_filters=(32, 64), dense_units=(1024, 512)) -> keras.Model:
    """A legacy-style Sequential CNN: Conv -> ReLU -> BatchNorm (BN after the activation), wide Dense layers.

    The layer order of many Keras 2 CIFAR tutorials, kept on purpose: BatchNorm after the ReLU cannot be
    folded into the conv, so the int8 export quantizes the conv output per tensor and then BN (a MUL and an
    ADD) rescales each channel; a CIFAR model of this shape kept only 68.9% int8 agreement (NOTES). Conv 32
    (3x3, ReLU, BN), max-pool; conv 64 (3x3, ReLU, BN), max-pool; Flatten (3,136 features); Dense 1024 ReLU;
    Dense 512 ReLU; Dense softmax. About 3.8M parameters and 7.6M MACs per image.

    Example:
    >>> model = build_seqbn_fmnist()
    >>> [layer.units for layer in model.layers if isinstance(layer, layers.Dense)]
    [1024, 512, 10]
    """
    stack = [keras.Input(INPUT_SHAPE, name="image")]
    for i, filters in enumerate(conv_filters, start=1):
        stack += [layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i}"),
                  layers.BatchNormalization(name=f"conv{i}_bn"),
                  layers.MaxPooling2D(2, name=f"pool{i}")]
    stack.append(layers.Flatten(name="flatten"))
    stack += [layers.Dense(units, activation="relu", name=f"fc{i}") for i, units in enumerate(dense_units, 1)]
    stack.append(layers.Dense(NUM_CLASSES, activation="softmax", name="predictions"))
    return keras.Sequential(stack, name="seqbn_fmnist")


BUILDERS = {
    "resnet_fmnist": build_resnet_fmnist,
    "vgg_fmnist": build_vgg_fmnist,
    "seqbn_fmnist": build_seqbn_fmnist,
}
