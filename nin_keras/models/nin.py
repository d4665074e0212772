"""Network in Network architectures (Lin, Chen & Yan 2014), built from a small spec.

Every NIN here is ``len(spec.body)`` blocks of *mlpconv → Caffe pooling 3/2 → dropout*, then a
classifier mlpconv whose last convolution has one map per class, then the global-average-pooling
head. Layer names are fixed (``mlpconv1``, ``pool1``, ``dropout1``, ..., ``head``): the Caffe
converter, the confidence-map extractor and CAM look layers up by them.

Feature-map widths (multiply-adds per image from ``count_flops``):

| builder | input | mlpconv widths (kernel) | params | MACs |
|---|---|---|---|---|
| ``nin_cifar10`` | 32×32×3 | 192-160-96 (5), 192-192-192 (5), 192-192-10 (3) | 966,986 | 222.5 M |
| ``nin_cifar100`` | 32×32×3 | same, last 100 maps | 984,356 | 223.6 M |
| ``nin_svhn`` | 32×32×3 | same as CIFAR-10 | 966,986 | 222.5 M |
| ``nin_mnist``, ``nin_fashion_mnist`` | 28×28×1 | 64-64-64 (5), 96-96-96 (5), 96-96-10 (3) | 275,626 | 46.0 M |

The paper used "the same network as CIFAR-10 with fewer feature maps" for MNIST without giving
widths; the 64/96/96 choice keeps the layout at a fifth of the CIFAR network's multiply-adds, and
a training step is about 5× faster on CPU (measured 2.7 s against 13.1 s per 128-image step on
two heavily shared cores).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras

from nin_keras.layers import CaffePooling2D, GlobalAveragePoolingHead, MaxoutMLPConv, MLPConv
from nin_keras.models._common import make_builder


@dataclasses.dataclass(frozen=True)
class Block:
    """One body block: an mlpconv, then Caffe pooling (``"max"`` or ``"average"``) and dropout.

    ``pieces`` (one per convolution) makes the mlpconv a ``MaxoutMLPConv`` of maxout units
    (``nin_keras.models.maxout_nin``); None, an ``MLPConv`` of ReLUs.
    """

    filters: tuple[int, ...]
    kernel_size: int
    pool: str
    pool_size: int = 3
    pool_strides: int = 2
    pieces: tuple[int, ...] | None = None


@dataclasses.dataclass(frozen=True)
class NINSpec:
    """A NIN architecture: body blocks, then a classifier mlpconv ``(*classifier_filters, classes)``
    (of maxout units with ``classifier_pieces``, one per convolution)."""

    body: tuple[Block, ...]
    classifier_filters: tuple[int, ...]
    classifier_kernel_size: int
    classifier_pieces: tuple[int, ...] | None = None


CIFAR_SPEC = NINSpec(
    body=(Block((192, 160, 96), 5, "max"), Block((192, 192, 192), 5, "average")),
    classifier_filters=(192, 192),
    classifier_kernel_size=3,
)
MNIST_SPEC = NINSpec(
    body=(Block((64, 64, 64), 5, "max"), Block((96, 96, 96), 5, "average")),
    classifier_filters=(96, 96),
    classifier_kernel_size=3,
)


def mlpconv(filters, kernel_size: int, pieces, batch_norm: bool, name: str) -> MLPConv | MaxoutMLPConv:
    """An ``MLPConv`` (ReLU on every convolution, as in the Caffe model), or with ``pieces`` a
    ``MaxoutMLPConv``."""
    if pieces is None:
        return MLPConv(filters, kernel_size, batch_norm=batch_norm, name=name)
    return MaxoutMLPConv(filters, pieces, kernel_size, batch_norm=batch_norm, name=name)


def nin_body(x, spec: NINSpec, batch_norm: bool = False, dropout: float = 0.5):
    """Apply the spec's body blocks (``mlpconv{i}``, ``pool{i}``, ``dropout{i}``) to tensor ``x``."""
    for i, block in enumerate(spec.body, start=1):
        x = mlpconv(block.filters, block.kernel_size, block.pieces, batch_norm, f"mlpconv{i}")(x)
        x = CaffePooling2D(block.pool_size, block.pool_strides, mode=block.pool, name=f"pool{i}")(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name=f"dropout{i}")(x)
    return x


def classifier_mlpconv(spec: NINSpec, classes: int, batch_norm: bool = False) -> MLPConv | MaxoutMLPConv:
    """The last mlpconv, one output map per class."""
    return mlpconv(
        (*spec.classifier_filters, classes),
        spec.classifier_kernel_size,
        spec.classifier_pieces,
        batch_norm,
        f"mlpconv{len(spec.body) + 1}",
    )


def build_nin(
    spec: NINSpec,
    input_shape: Sequence[int | None],
    classes: int,
    include_top: bool = True,
    classifier_activation: str | None = "softmax",
    name: str = "nin",
    batch_norm: bool = False,
    dropout: float = 0.5,
) -> keras.Model:
    """Build the NIN described by ``spec`` (see the module docstring for the layer names).

    ``include_top=False`` returns the body only (up to the last body block's dropout), the
    features the classifier mlpconv takes.
    """
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = nin_body(inputs, spec, batch_norm, dropout)
    if include_top:
        x = classifier_mlpconv(spec, classes, batch_norm)(x)
        # float32 under mixed precision too: a bfloat16/float16 softmax rounds the probabilities.
        x = GlobalAveragePoolingHead(activation=classifier_activation, dtype="float32", name="head")(x)
    return keras.Model(inputs, x, name=name)


nin_cifar10 = make_builder(
    "nin_cifar10", build_nin, CIFAR_SPEC, (32, 32, 3), 10,
    "NIN for CIFAR-10, layer for layer the original Caffe model (966,986 parameters).",
)
nin_cifar100 = make_builder(
    "nin_cifar100", build_nin, CIFAR_SPEC, (32, 32, 3), 100,
    "NIN for CIFAR-100: the CIFAR-10 network with 100 maps in the last layer (984,356 parameters).",
)
nin_svhn = make_builder(
    "nin_svhn", build_nin, CIFAR_SPEC, (32, 32, 3), 10,
    "NIN for SVHN: the CIFAR-10 layout, as in the paper's Section 4.4.",
)
nin_mnist = make_builder(
    "nin_mnist", build_nin, MNIST_SPEC, (28, 28, 1), 10,
    "NIN for MNIST: the CIFAR-10 layout with fewer maps (64/96/96), see the module docstring.",
)
nin_fashion_mnist = make_builder(
    "nin_fashion_mnist", build_nin, MNIST_SPEC, (28, 28, 1), 10,
    "NIN for Fashion-MNIST: the MNIST network.",
)
