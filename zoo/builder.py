"""``create_model``: a zoo architecture by name, with random or published weights (the timm /
keras-hub entry point). Above the registry, the presets and ``transfer``: the published weights
are a preset, fitted to changed arguments by ``transfer.load_pretrained``."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import keras

from nin_keras.zoo.architectures import build_architecture
from nin_keras.zoo.registry import get_pretrained_config
from nin_keras.zoo.transfer import load_pretrained


def create_model(
    name: str,
    pretrained: bool | str = False,
    classes: int | None = None,
    input_shape: Sequence[int | None] | None = None,
    include_top: bool = True,
    **kwargs: Any,
) -> keras.Model:
    """Build a zoo model, optionally with published weights (the timm / keras-hub entry point).

    With ``pretrained`` the architecture arguments start from those the weights were trained with;
    a different ``classes``, ``input_shape`` or ``include_top=False`` builds the new model and
    copies the pretrained weights into it layer by layer (by name). The classifier (the layers
    ``include_top`` adds) keeps its fresh initialization where its shapes changed: ready for
    fine-tuning. Every other layer must fit exactly.

    Args:
        name: zoo name, optionally with a weight tag: ``"nin_cifar10"``, ``"nin_cifar10.caffe"``.
        pretrained: False, True (the default tag, or the one in ``name``) or a tag.
        classes: number of classes; default the architecture's (or the weights').
        input_shape: image shape; default the architecture's.
        include_top: False returns the body without the classifier.
        **kwargs: other builder arguments (``batch_norm``, ``dropout``, ``classifier_activation``, ...).

    Returns:
        A ``keras.Model``, the bare network. The published preset with its preprocessing is
        ``ImageClassifier.from_preset(name)`` (its ``backbone`` is this network with those weights).

    Raises:
        ValueError: unknown name (with close matches) or tag, or no published weights.
        WeightsMismatchError: the weights do not fit the requested architecture (names the layer).
        DownloadError, HashMismatchError: the weights could not be fetched or verified.
    """
    arguments = dict(kwargs, include_top=include_top)
    if classes is not None:
        arguments["classes"] = classes
    if input_shape is not None:
        arguments["input_shape"] = list(input_shape)
    if not pretrained:
        return build_architecture(name, **arguments)
    entry, config = get_pretrained_config(name, pretrained)
    return load_pretrained(entry, config, arguments)


def build_model(name: str, **kwargs: Any) -> keras.Model:
    """Deprecated spelling of ``create_model(name, **kwargs)`` (random weights)."""
    warnings.warn("nin_keras.zoo.build_model is deprecated; use nin_keras.zoo.create_model (the same call).",
                  DeprecationWarning, stacklevel=2)
    return create_model(name, **kwargs)
