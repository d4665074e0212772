"""Argument handling shared by the architecture builders (keras.applications conventions)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import keras

from nin_keras.errors import WeightsMismatchError
from nin_keras.layers import _args


def input_shape_arg(input_shape: Sequence[int | None] | None, default: tuple[int, int, int]) -> tuple:
    """Validate ``input_shape`` (3 dims, positive or None for spatial dims); None gives ``default``."""
    if input_shape is None:
        return default
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence) or len(input_shape) != 3:
        raise ValueError(f"`input_shape` must have 3 dimensions (rows, cols, channels), got {input_shape!r}.")
    for dim in input_shape:
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
            raise ValueError(f"`input_shape` dimensions must be positive ints or None, got {input_shape!r}.")
    channel = 0 if keras.config.image_data_format() == "channels_first" else 2
    if input_shape[channel] is None:
        raise ValueError(f"`input_shape` must give the number of channels, got {input_shape!r}.")
    return tuple(input_shape)


def load_weights(model: keras.Model, weights: str | os.PathLike | None) -> keras.Model:
    """Load ``weights`` (None or a ``.weights.h5`` path) into ``model`` and return it.

    Pretrained names such as ``"nin_cifar10.caffe"`` are resolved by ``nin_keras.zoo``, not here.
    """
    if weights is None:
        return model
    path = os.fspath(weights) if isinstance(weights, (str, os.PathLike)) else None
    if path is None or not path.endswith(".weights.h5"):
        raise ValueError(
            f"`weights` must be None or a path to a .weights.h5 file, got {weights!r} "
            "(pretrained names are resolved by nin_keras.zoo.create_model)."
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"`weights` file not found: {path}")
    try:
        model.load_weights(path)
    except ValueError as err:
        raise WeightsMismatchError(f"{path} does not fit model {model.name!r}: {err}") from err
    return model


def make_builder(
    name: str,
    build: Callable[..., keras.Model],
    spec: object,
    default_shape: tuple[int, int, int],
    default_classes: int,
    about: str,
    **fixed,
) -> Callable[..., keras.Model]:
    """A keras.applications-style builder ``name(input_shape, classes, ...)`` around ``build``.

    ``build(spec, input_shape, classes, include_top=..., classifier_activation=..., name=...,
    batch_norm=..., dropout=..., **fixed)`` makes the model; the builder validates the shared
    arguments, fills in the defaults and loads ``weights``. One function serves every data set.
    """

    def builder(
        input_shape: Sequence[int | None] | None = None,
        classes: int = default_classes,
        include_top: bool = True,
        weights: str | os.PathLike | None = None,
        classifier_activation: str | None = "softmax",
        name: str = name,
        batch_norm: bool = False,
        dropout: float = 0.5,
    ) -> keras.Model:
        model = build(
            spec,
            input_shape_arg(input_shape, default_shape),
            _args.positive_int(classes, "classes"),
            include_top=bool(include_top),
            classifier_activation=classifier_activation,
            name=name,
            batch_norm=bool(batch_norm),
            dropout=_args.rate(dropout, "dropout"),
            **fixed,
        )
        return load_weights(model, weights)

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = f"""{about}

    Args:
        input_shape: image shape, default ``{default_shape}``.
        classes: number of classes, default {default_classes}.
        include_top: False returns the features the classifier would take (see the module docstring).
        weights: None (random initialization) or a path to a ``.weights.h5`` file; pretrained
            names are resolved by ``nin_keras.zoo``.
        classifier_activation: ``"softmax"`` for probabilities, None for logits.
        name: model name.
        batch_norm: batch normalization after every convolution / hidden layer.
        dropout: dropout rate of the hidden layers (0 removes the dropout layers).

    Returns:
        A ``keras.Model`` from images to class probabilities (or to features).
    """
    return builder
