"""The NIN paper's Section 4.6 comparison: the same NIN with a fully connected classifier.

The paper trains the CIFAR-10 NIN three ways and reports test errors of 11.59% (fully connected
top), 10.88% (fully connected top with dropout) and 10.41% (global average pooling,
``nin_cifar10``). Here the fully connected variants keep every mlpconv layer of ``nin_cifar10``
(the last one still makes one 8×8 map per class) and replace the ``head`` by ``flatten`` →
(``fc_dropout``) → ``fc``, a dense layer from the 8·8·classes maps to the classes. The paper
does not give the exact top; this is the smallest change that swaps GAP for a fully connected
layer.

``include_top=False`` returns the flattened maps the ``fc`` layer takes.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from nin_keras.models._common import make_builder
from nin_keras.models.nin import CIFAR_SPEC, NINSpec, classifier_mlpconv, nin_body


def build_nin_fc(
    spec: NINSpec,
    input_shape: Sequence[int | None],
    classes: int,
    include_top: bool = True,
    classifier_activation: str | None = "softmax",
    name: str = "nin_fc",
    batch_norm: bool = False,
    dropout: float = 0.5,
    fc_dropout: float = 0.0,
) -> keras.Model:
    """NIN described by ``spec`` with a fully connected classifier in place of the GAP head."""
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = nin_body(inputs, spec, batch_norm, dropout)
    x = classifier_mlpconv(spec, classes, batch_norm)(x)
    x = keras.layers.Flatten(name="flatten")(x)
    if include_top:
        if fc_dropout > 0:
            x = keras.layers.Dropout(fc_dropout, name="fc_dropout")(x)
        # float32 under mixed precision too: a bfloat16/float16 softmax rounds the probabilities.
        x = keras.layers.Dense(classes, activation=classifier_activation, dtype="float32", name="fc")(x)
    return keras.Model(inputs, x, name=name)


nin_fc_cifar10 = make_builder(
    "nin_fc_cifar10", build_nin_fc, CIFAR_SPEC, (32, 32, 3), 10,
    "Section 4.6 baseline: NIN CIFAR-10 with a fully connected top, no dropout on it (paper: 11.59%).",
)
nin_fc_dropout_cifar10 = make_builder(
    "nin_fc_dropout_cifar10", build_nin_fc, CIFAR_SPEC, (32, 32, 3), 10,
    "Section 4.6 baseline: NIN CIFAR-10 with a fully connected top and dropout 0.5 before it "
    "(paper: 10.88%).",
    fc_dropout=0.5,
)
