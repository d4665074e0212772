"""Fold batch normalization into the convolutions of a NIN or MIN: the same function, the plain layout.

A NIN trained with ``batch_norm=True`` computes, in inference, ``BN(conv(x, K)) = conv(x, K * s)
+ (beta - mean * s)`` per output channel, with ``s = gamma / sqrt(moving_variance + epsilon)``.
Folding writes that kernel and bias into the ``batch_norm=False`` network of the same
architecture, so trained BN weights become ordinary weights of the paper's layout (the Caffe
weights' architecture): one architecture per zoo name, whatever recipe trained the weights, and
the exported graph carries no batch-norm ops. The same holds for MIN's ``MaxoutMLPConv``, whose
normalizations sit between each convolution and its max over pieces: per channel, before the max.
"""

from __future__ import annotations

from typing import Callable

import keras
import numpy as np

from nin_keras.layers import MaxoutMLPConv, MLPConv

#: The layers whose batch normalizations are folded (each convolution's, channel by channel).
FOLDABLE = (MLPConv, MaxoutMLPConv)


def has_batch_norm(model: keras.Model) -> bool:
    """Whether ``model`` has a layer with batch normalizations ``fold_batch_norm`` folds."""
    return any(isinstance(layer, FOLDABLE) and layer.batch_norm for layer in model.layers)


def fold_batch_norm(model: keras.Model, build_plain: Callable[[], keras.Model]) -> keras.Model:
    """The ``batch_norm=False`` twin of ``model`` with every MLPConv's (and MaxoutMLPConv's) batch
    norms folded in.

    Args:
        model: a NIN (MIN) whose MLPConv (MaxoutMLPConv) layers have ``batch_norm=True`` (others
            are copied as is).
        build_plain: builds the same architecture with ``batch_norm=False`` (layer names equal).

    Returns:
        The plain model; in inference it computes what ``model`` computes (to float32 rounding).

    Raises:
        ValueError: the two models' layers do not pair up by name and type.
    """
    plain = build_plain()
    source = {layer.name: layer for layer in model.layers}
    for target in plain.layers:
        if target.name not in source or type(source[target.name]) is not type(target):
            raise ValueError(f"layer {target.name!r} of the plain model has no twin in {model.name!r}")
        layer = source[target.name]
        if isinstance(layer, FOLDABLE) and layer.batch_norm:
            if target.batch_norm:
                raise ValueError(f"build_plain must build batch_norm=False layers; {target.name!r} has batch norm")
            weights = []
            for kernel, norm in zip(layer.kernels, layer.norms):
                scale = _as_numpy(norm.gamma) / np.sqrt(_as_numpy(norm.moving_variance) + norm.epsilon)
                weights += [_as_numpy(kernel) * scale, _as_numpy(norm.beta) - _as_numpy(norm.moving_mean) * scale]
            target.set_weights(weights)
        else:
            target.set_weights(layer.get_weights())
    return plain


def _as_numpy(variable) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(variable), np.float64)
