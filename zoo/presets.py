"""Deprecated ways into a preset, kept working as before: each warns with a ``DeprecationWarning``
naming the one entry that replaces it, ``ImageClassifier.from_preset`` (a preset as one
classifier: ``.backbone``, ``.preprocessing``, ``.class_names``, ``.input_policy``,
``.metadata``) or the ``ImageClassifier`` constructor.

===============================================  =================================================
old                                              new
===============================================  =================================================
``zoo.from_preset(p)``                           ``ImageClassifier.from_preset(p)``
``zoo.load_preset(p)`` (a ``Preset``)            ``ImageClassifier.from_preset(p)``
``Preset.classifier()`` (float32 input)          ``ImageClassifier.from_preset(p)``
``Preset.inference_model()`` (uint8 input)       ``ImageClassifier.from_preset(p, input_dtype="uint8")``
``zoo.inference_model(net, layers)`` (uint8)     ``ImageClassifier(net, layers, input_dtype="uint8")``
===============================================  =================================================

Reading a folder is ``nin_keras.zoo.preset_loader`` (``read_preset`` -> ``PresetContents``),
writing one ``nin_keras.zoo.preset_writer`` (``save_preset``, or ``ImageClassifier.save_to_preset``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable

import keras

from nin_keras.zoo.classifier import ImageClassifier
from nin_keras.zoo.preset_loader import PresetContents, read_preset


def _deprecated(old: str, new: str) -> None:
    # stacklevel 3: the warning points at the caller of the deprecated function, not at this helper.
    warnings.warn(f"{old} is deprecated; use {new}.", DeprecationWarning, stacklevel=3)


class Preset(PresetContents):
    """A loaded preset, as ``load_preset`` (deprecated) returns it: ``PresetContents``'s network
    (``model``), preprocessing layers, metadata, architecture, ``kwargs`` and ``path``, and the
    classifier they make (``ImageClassifier.from_preset`` gives that classifier directly)."""

    def classifier(self, input_dtype: str = "float32") -> ImageClassifier:
        """Deprecated: ``ImageClassifier.from_preset(path)`` (float32 input by default, as here)."""
        _deprecated("Preset.classifier()", "nin_keras.zoo.ImageClassifier.from_preset(preset)")
        return ImageClassifier.from_loaded(self, input_dtype=input_dtype)

    def inference_model(self, input_dtype: str = "uint8") -> ImageClassifier:
        """Deprecated: ``ImageClassifier.from_preset(path, input_dtype="uint8")`` (uint8 input by
        default, as before)."""
        _deprecated("Preset.inference_model()",
                    "nin_keras.zoo.ImageClassifier.from_preset(preset, input_dtype='uint8')")
        return ImageClassifier.from_loaded(self, input_dtype=input_dtype)

    def __repr__(self) -> str:
        return f"Preset({self.architecture!r}, dataset={self.metadata.get('dataset')!r}, path={str(self.path)!r})"


def load_preset(preset: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None) -> Preset:
    """Deprecated: ``ImageClassifier.from_preset(preset)``, whose ``backbone``, ``preprocessing``
    and ``metadata`` are this ``Preset``'s ``model``, ``preprocessing`` and ``metadata``. Reads
    through ``read_preset`` (what it accepts and raises)."""
    _deprecated("nin_keras.zoo.load_preset", "nin_keras.zoo.ImageClassifier.from_preset (.backbone, "
                ".preprocessing, .metadata, .class_names)")
    contents = read_preset(preset, cache_dir=cache_dir)
    return Preset(contents.model, contents.preprocessing, contents.metadata, contents.architecture,
                  contents.kwargs, contents.path)


def from_preset(preset: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None) -> ImageClassifier:
    """Deprecated: ``ImageClassifier.from_preset(preset)``, which this calls."""
    _deprecated("nin_keras.zoo.from_preset", "nin_keras.zoo.ImageClassifier.from_preset (the same call)")
    return ImageClassifier.from_preset(preset, cache_dir=cache_dir)


def inference_model(
    model: keras.Model,
    preprocessing: Iterable[keras.layers.Layer] = (),
    input_dtype: str = "uint8",
    name: str | None = None,
) -> ImageClassifier:
    """Deprecated: ``ImageClassifier(model, preprocessing, input_dtype="uint8")``. As before, an
    ``ImageClassifier`` with a ``uint8`` input by default, named ``"<model.name>_inference"``."""
    _deprecated("nin_keras.zoo.inference_model",
                "nin_keras.zoo.ImageClassifier(model, preprocessing, input_dtype='uint8')")
    return ImageClassifier(model, preprocessing, input_dtype=input_dtype, name=name or f"{model.name}_inference")
