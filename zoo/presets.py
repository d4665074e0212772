"""Presets: a trained model as a folder (keras-hub style) that loads with no code from the user.

This module holds the loaded preset (``Preset``: the folder's contents and the classifier built
from them), ``load_preset``/``from_preset`` and the raw-image model built from a network and its
preprocessing (``inference_model``); the folder format is ``nin_keras.zoo.preset_format``, reading
it ``nin_keras.zoo.preset_loader``, writing it ``nin_keras.zoo.preset_writer`` (``save_preset``),
and copying pretrained weights into a changed architecture ``nin_keras.zoo.transfer``.

Example:
    >>> from nin_keras.zoo import load_preset, save_preset
    >>> preset = load_preset("nin_mnist")              # registry name, local folder or URL
    >>> preset.classifier().predict(uint8_images)      # raw images -> preprocessing -> network
    >>> save_preset(preset.model, "my_preset", preset.metadata, preset.preprocessing)
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import keras

from nin_keras.zoo.classifier import ImageClassifier
from nin_keras.zoo.preset_loader import PresetContents, read_preset


class Preset(PresetContents):
    """A loaded preset: the network, its fitted preprocessing layers and its metadata
    (``PresetContents``'s attributes), and the classifier they make.

    Attributes:
        model: the ``keras.Model`` (network only, float inputs already preprocessed).
        preprocessing: the preprocessing layers, in application order.
        metadata: the parsed ``metadata.json``.
        architecture: zoo name of the network; ``kwargs`` its builder arguments.
        path: the folder it was loaded from.
    """

    def classifier(self, input_dtype: str = "float32") -> ImageClassifier:
        """The preset as an ``ImageClassifier``: raw images -> preprocessing -> network, with the
        preset's class names, input policy and metadata."""
        return ImageClassifier.from_loaded(self, input_dtype=input_dtype)

    def inference_model(self, input_dtype: str = "uint8") -> ImageClassifier:
        """Raw images in ``[0, 255]`` -> preprocessing -> network (``classifier`` with a uint8
        input by default, as before)."""
        return self.classifier(input_dtype=input_dtype)

    def __repr__(self) -> str:
        return f"Preset({self.architecture!r}, dataset={self.metadata.get('dataset')!r}, path={str(self.path)!r})"


def load_preset(preset: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None) -> Preset:
    """Load a preset: a local folder, an ``http(s)://``/``file://`` URL of a folder, or a zoo name,
    every file verified (``nin_keras.zoo.preset_loader.read_preset`` says how, and what it raises).

    Example:
        >>> load_preset("nin_cifar10.caffe").classifier().classify(["cat.jpg"])
    """
    contents = read_preset(preset, cache_dir=cache_dir)
    return Preset(contents.model, contents.preprocessing, contents.metadata, contents.architecture,
                  contents.kwargs, contents.path)


def from_preset(preset: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None) -> ImageClassifier:
    """``load_preset(preset)`` as an ``ImageClassifier`` that takes raw images (see ``load_preset``
    for what ``preset`` may be); its ``backbone`` is the bare network."""
    return ImageClassifier.from_preset(preset, cache_dir=cache_dir)


def inference_model(
    model: keras.Model,
    preprocessing: Iterable[keras.layers.Layer] = (),
    input_dtype: str = "uint8",
    name: str | None = None,
) -> ImageClassifier:
    """Raw images -> cast to float32 -> ``preprocessing`` -> ``model``, as an ``ImageClassifier``
    named ``"<model.name>_inference"`` (``name`` to override) with a ``uint8`` input by default.

    Shapes: ``(batch, *model.input_shape[1:])`` in, ``model``'s output out.
    """
    return ImageClassifier(model, preprocessing, input_dtype=input_dtype, name=name or f"{model.name}_inference")
