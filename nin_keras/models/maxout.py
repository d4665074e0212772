"""Maxout networks after Goodfellow et al. 2013 (the baselines of the NIN paper's tables).

One builder makes all three from a spec: maxout convolution blocks (each followed by max pooling
and dropout), then dense maxout layers, then a softmax layer named ``predictions``. As in
pylearn2's recipes the input has its own dropout (rate 0.2, i.e. include probability 0.8) when
``dropout > 0``, and every kernel has a max-norm constraint.

| builder | layers (units × pieces) | params | MACs |
|---|---|---|---|
| ``maxout_mnist`` | permutation-invariant MLP: 784 → 240×5 → 240×5 → softmax | 1,233,610 | 1.2 M |
| ``maxout_conv_mnist`` | conv 48×2 8×8, pool 4/2; 48×2 8×8, pool 4/2; 24×4 5×5, pool 2/2 → softmax | 418,714 | 58.8 M |
| ``maxout_cifar10`` | conv 96×2 8×8, pool 4/2; 192×2 8×8, pool 4/2; 192×2 5×5, pool 2/2; dense 500×5 → softmax | 11,927,830 | 666.6 M |

Deviations from the pylearn2 recipes, for one simple code path: convolutions use ``"same"``
padding (pylearn2 padded 0/3/3 or 4/3/3 pixels) and pooling uses Caffe/cuda-convnet ceil
rounding (``CaffePooling2D``), so the spatial sizes differ by a pixel or two.

Layer names: ``input_dropout``, ``maxout_conv{i}``, ``pool{i}``, ``dropout{i}``, ``flatten``,
``maxout_dense{j}``, ``dense_dropout{j}``, ``predictions`` (and ``batch_norm{i}``,
``dense_batch_norm{j}`` before the dropouts with ``batch_norm=True``). ``include_top=False`` leaves out only
``predictions`` (the features are the last hidden layer's output).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras

from nin_keras.layers import CaffePooling2D, FusedBatchNormalization, Maxout, MaxoutConv2D
from nin_keras.models._common import make_builder


@dataclasses.dataclass(frozen=True)
class ConvBlock:
    """A maxout convolution, max pooling ``pool_size``/``pool_strides``, then dropout."""

    filters: int
    pieces: int
    kernel_size: int
    pool_size: int
    pool_strides: int
    max_norm: float


@dataclasses.dataclass(frozen=True)
class DenseBlock:
    """A dense maxout layer, then dropout."""

    units: int
    pieces: int
    max_norm: float


@dataclasses.dataclass(frozen=True)
class MaxoutSpec:
    """Convolution blocks, dense maxout blocks and the softmax layer's max norm."""

    conv: tuple[ConvBlock, ...]
    dense: tuple[DenseBlock, ...]
    classifier_max_norm: float = 1.9365
    input_dropout: float = 0.2


MNIST_MLP_SPEC = MaxoutSpec(conv=(), dense=(DenseBlock(240, 5, 1.9365), DenseBlock(240, 5, 1.9365)))
MNIST_CONV_SPEC = MaxoutSpec(
    conv=(ConvBlock(48, 2, 8, 4, 2, 0.9), ConvBlock(48, 2, 8, 4, 2, 1.9365), ConvBlock(24, 4, 5, 2, 2, 1.9365)),
    dense=(),
)
CIFAR10_SPEC = MaxoutSpec(
    conv=(ConvBlock(96, 2, 8, 4, 2, 0.9), ConvBlock(192, 2, 8, 4, 2, 1.9365), ConvBlock(192, 2, 5, 2, 2, 1.9365)),
    dense=(DenseBlock(500, 5, 1.9),),
)


def build_maxout(
    spec: MaxoutSpec,
    input_shape: Sequence[int | None],
    classes: int,
    include_top: bool = True,
    classifier_activation: str | None = "softmax",
    name: str = "maxout",
    batch_norm: bool = False,
    dropout: float = 0.5,
) -> keras.Model:
    """Build the maxout network described by ``spec`` (layer names in the module docstring)."""
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = inputs
    if dropout > 0 and spec.input_dropout > 0:
        x = keras.layers.Dropout(spec.input_dropout, name="input_dropout")(x)

    def regularize(x, bn_name, dropout_name):
        if batch_norm:
            x = FusedBatchNormalization(name=bn_name)(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name=dropout_name)(x)
        return x

    for i, block in enumerate(spec.conv, start=1):
        x = MaxoutConv2D(
            block.filters, block.pieces, block.kernel_size, padding="same",
            kernel_constraint=keras.constraints.MaxNorm(block.max_norm, axis=[0, 1, 2]),
            name=f"maxout_conv{i}",
        )(x)
        x = CaffePooling2D(block.pool_size, block.pool_strides, mode="max", name=f"pool{i}")(x)
        x = regularize(x, f"batch_norm{i}", f"dropout{i}")
    x = keras.layers.Flatten(name="flatten")(x)
    for j, block in enumerate(spec.dense, start=1):
        x = Maxout(
            block.units, block.pieces,
            kernel_constraint=keras.constraints.MaxNorm(block.max_norm, axis=0),
            name=f"maxout_dense{j}",
        )(x)
        x = regularize(x, f"dense_batch_norm{j}", f"dense_dropout{j}")
    if include_top:
        x = keras.layers.Dense(
            classes, activation=classifier_activation,
            kernel_constraint=keras.constraints.MaxNorm(spec.classifier_max_norm, axis=0),
            dtype="float32",  # the softmax stays float32 under mixed precision
            name="predictions",
        )(x)
    return keras.Model(inputs, x, name=name)


maxout_mnist = make_builder(
    "maxout_mnist", build_maxout, MNIST_MLP_SPEC, (28, 28, 1), 10,
    "Permutation-invariant maxout MLP for MNIST (two layers of 240 units × 5 pieces).",
)
maxout_conv_mnist = make_builder(
    "maxout_conv_mnist", build_maxout, MNIST_CONV_SPEC, (28, 28, 1), 10,
    "Convolutional maxout network for MNIST (three maxout convolution layers).",
)
maxout_cifar10 = make_builder(
    "maxout_cifar10", build_maxout, CIFAR10_SPEC, (32, 32, 3), 10,
    "Convolutional maxout network for CIFAR-10 (three maxout convolutions, dense maxout 500×5).",
)
