"""Model definitions shared by both sides of the benchmark.

Every builder takes the keras module as its first argument so the very same definition
builds under Keras 3 (``import keras``, the service side) and under Keras 2
(``import tf_keras as keras``, the tfmot side). Layer names are fixed, because the
portable weight files (``weights_io``) are keyed by them. All models output logits (no
softmax); train them with ``SparseCategoricalCrossentropy(from_logits=True)``.

Only the functional API and layers that exist, with the same weight order, in both
Keras versions are used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# The keras module (Keras 3 or tf_keras); typed loosely because the two are different packages.
KerasModule = Any
Model = Any


def lenet_300_100(
    keras: KerasModule, input_shape: tuple[int, ...] = (28, 28), num_classes: int = 10
) -> Model:
    """LeNet-300-100: the 784-300-100-10 fully connected net (LeCun et al. 1998)."""
    inputs = keras.Input(shape=input_shape, name="input")
    x = keras.layers.Flatten(name="flatten")(inputs)
    x = keras.layers.Dense(300, activation="relu", name="fc1")(x)
    x = keras.layers.Dense(100, activation="relu", name="fc2")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="lenet_300_100")


def lenet5(
    keras: KerasModule, input_shape: tuple[int, ...] = (28, 28, 1), num_classes: int = 10
) -> Model:
    """Caffe-style LeNet-5: conv 20@5x5, pool, conv 50@5x5, pool, dense 500, dense 10.

    Layer widths follow Caffe's ``lenet_train_test.prototxt`` (the net used by Han et al.
    2015). Unlike that prototxt, the convolutions are followed by ReLU, as in most modern
    re-implementations; 431k parameters in all.
    """
    inputs = keras.Input(shape=input_shape, name="input")
    x = keras.layers.Conv2D(20, 5, activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(50, 5, activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(500, activation="relu", name="fc1")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="lenet5")


def vgg_small(
    keras: KerasModule,
    input_shape: tuple[int, ...] = (28, 28, 1),
    num_classes: int = 10,
    widths: tuple[int, ...] = (32, 64, 128),
) -> Model:
    """A small VGG-style CNN for 28x28x1 images (Fashion-MNIST).

    Three blocks of two 3x3 convolutions (Conv -> BatchNorm -> ReLU), each block followed
    by 2x2 max pooling (28 -> 14 -> 7 -> 3), then global average pooling and a linear
    classifier. Convolutions carry no bias because BatchNorm follows them.

    BatchNorm uses ``momentum=0.9`` (PyTorch's 0.1) rather than Keras' 0.99: the conv
    outputs have a variance far below the moving variance's initial 1.0, and with 0.99 a
    short (quick-mode or fine-tune) run leaves the inference statistics unconverged: a
    5-epoch run on 6k images trained to 93% accuracy but scored 10% in inference mode.
    """
    inputs = keras.Input(shape=input_shape, name="input")
    x = inputs
    for b, width in enumerate(widths, start=1):
        for c in (1, 2):
            x = keras.layers.Conv2D(
                width, 3, padding="same", use_bias=False, name=f"block{b}_conv{c}"
            )(x)
            x = keras.layers.BatchNormalization(momentum=0.9, name=f"block{b}_bn{c}")(x)
            x = keras.layers.ReLU(name=f"block{b}_relu{c}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"block{b}_pool")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="vgg_small")


def resnet_small(
    keras: KerasModule,
    input_shape: tuple[int, ...] = (28, 28, 1),
    num_classes: int = 10,
    widths: tuple[int, ...] = (16, 32, 64),
) -> Model:
    """A small residual CNN with 1x1 shortcuts and BatchNorm, for 28x28x1 images.

    A 3x3 stem (Conv -> BN -> ReLU, ``widths[0]`` channels), then one basic block per
    width: ``Conv3x3(stride) -> BN -> ReLU -> Conv3x3 -> BN`` added to a projection
    shortcut ``Conv1x1(stride) -> BN``, then ReLU (He et al. 2016, option B shortcuts).
    The first block keeps the resolution, the others halve it (28 -> 14 -> 7). Global
    average pooling and a linear classifier. The shortcut's Add couples the block's second
    convolution and its projection into one channel group (pruned together).
    BatchNorm momentum 0.9 (PyTorch's 0.1), as in :func:`vgg_small`.
    """
    bn = {"momentum": 0.9}
    inputs = keras.Input(shape=input_shape, name="input")
    x = keras.layers.Conv2D(widths[0], 3, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = keras.layers.BatchNormalization(**bn, name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    for b, width in enumerate(widths, start=1):
        stride = 1 if b == 1 else 2
        y = keras.layers.Conv2D(
            width, 3, strides=stride, padding="same", use_bias=False, name=f"block{b}_conv1"
        )(x)
        y = keras.layers.BatchNormalization(**bn, name=f"block{b}_bn1")(y)
        y = keras.layers.ReLU(name=f"block{b}_relu1")(y)
        y = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"block{b}_conv2")(y)
        y = keras.layers.BatchNormalization(**bn, name=f"block{b}_bn2")(y)
        s = keras.layers.Conv2D(
            width, 1, strides=stride, padding="same", use_bias=False, name=f"block{b}_short"
        )(x)
        s = keras.layers.BatchNormalization(**bn, name=f"block{b}_short_bn")(s)
        x = keras.layers.Add(name=f"block{b}_add")([y, s])
        x = keras.layers.ReLU(name=f"block{b}_relu2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="resnet_small")


@dataclass(frozen=True)
class ModelSpec:
    builder: Callable[..., Model]
    channel_axis: bool  # whether inputs carry a trailing channel axis
    default_dataset: str


MODELS: dict[str, ModelSpec] = {
    "lenet_300_100": ModelSpec(lenet_300_100, channel_axis=False, default_dataset="mnist"),
    "lenet5": ModelSpec(lenet5, channel_axis=True, default_dataset="mnist"),
    "vgg_small": ModelSpec(vgg_small, channel_axis=True, default_dataset="fashion_mnist"),
    "resnet_small": ModelSpec(resnet_small, channel_axis=True, default_dataset="fashion_mnist"),
}


def build(
    keras: KerasModule,
    name: str,
    input_shape: tuple[int, ...],
    num_classes: int = 10,
    **options: Any,
) -> Model:
    """Build model ``name`` with the given keras module and input shape (``options``: the
    builder's own, e.g. ``widths``)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODELS)}")
    return MODELS[name].builder(keras, input_shape=input_shape, num_classes=num_classes, **options)
