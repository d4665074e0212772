"""Presets: a trained model as a folder (keras-hub style) that loads with no code from the user.

This module holds the loaded preset (``Preset``), the raw-image model built from a network and
its preprocessing (``inference_model``) and writing a preset (``save_preset``); the folder format
is ``nin_keras.zoo.preset_format``, loading ``nin_keras.zoo.preset_loader``, and copying
pretrained weights into a changed architecture ``nin_keras.zoo.transfer``.

Example:
    >>> from nin_keras.zoo import load_preset, save_preset
    >>> preset = load_preset("nin_mnist")              # registry name, local folder or URL
    >>> preset.classifier().predict(uint8_images)      # raw images -> preprocessing -> network
    >>> save_preset(preset.model, "my_preset", preset.metadata, preset.preprocessing)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

import nin_keras
from nin_keras.data.input_policy import InputPolicy, policy_from_metadata
from nin_keras.errors import PresetError
from nin_keras.io_utils import atomic_dir, sha256_file
from nin_keras.models import count_flops
from nin_keras.zoo import registry
from nin_keras.zoo.classifier import ImageClassifier
from nin_keras.zoo.preset_format import (
    CONFIG_FILE,
    FORMAT,
    FORMAT_VERSION,
    METADATA_FILE,
    PREPROCESSING_FILE,
    PRESET_FILES,
    WEIGHTS_FILE,
    check_finite,
    is_preset_folder,
    json_default,
    parse_metadata,
    preprocessing_stack,
    weight_shapes,
)


class Preset:
    """A loaded preset: the network, its fitted preprocessing layers and its metadata.

    Attributes:
        model: the ``keras.Model`` (network only, float inputs already preprocessed).
        preprocessing: the preprocessing layers, in application order.
        metadata: the parsed ``metadata.json``.
        architecture: zoo name of the network; ``kwargs`` its builder arguments.
        path: the folder it was loaded from.
    """

    def __init__(
        self,
        model: keras.Model,
        preprocessing: Sequence[keras.layers.Layer],
        metadata: Mapping[str, Any],
        architecture: str,
        kwargs: Mapping[str, Any],
        path: Path | None = None,
    ):
        self.model = model
        self.preprocessing = list(preprocessing)
        self.metadata = dict(metadata)
        self.architecture = architecture
        self.kwargs = dict(kwargs)
        self.path = path

    @property
    def class_names(self) -> list[str] | None:
        return self.metadata.get("class_names")

    @property
    def input_policy(self) -> InputPolicy | None:
        """How an image file becomes this model's input: ``metadata.json``'s ``input_policy``,
        or (presets written before policies existed) the default of its data set; None for a
        model whose input is not a fixed-size image."""
        return policy_from_metadata(self.metadata, self.model.input_shape[1:])

    def classifier(self, input_dtype: str = "float32") -> ImageClassifier:
        """The preset as an ``ImageClassifier``: raw images -> preprocessing -> network, with the
        preset's class names, input policy and metadata."""
        return ImageClassifier(self.model, self.preprocessing, class_names=self.class_names,
                               input_policy=self.input_policy, metadata=self.metadata,
                               input_dtype=input_dtype, name=f"{self.model.name}_inference")

    def inference_model(self, input_dtype: str = "uint8") -> ImageClassifier:
        """Raw images in ``[0, 255]`` -> preprocessing -> network (``classifier`` with a uint8
        input by default, as before)."""
        return self.classifier(input_dtype=input_dtype)

    def __repr__(self) -> str:
        return f"Preset({self.architecture!r}, dataset={self.metadata.get('dataset')!r}, path={str(self.path)!r})"


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


def save_preset(
    model: keras.Model,
    path: str | os.PathLike,
    metadata: Mapping[str, Any],
    preprocessing: Sequence[keras.layers.Layer] | None = None,
    *,
    architecture: str | None = None,
    architecture_kwargs: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` (+ fitted preprocessing) as a preset folder, atomically.

    Args:
        model: a network built by ``create_model`` (or pass ``architecture``).
        path: the preset folder to create.
        metadata: at least ``dataset``; usually also ``class_names``, ``metrics`` (percentages),
            ``command`` (what measured them), ``paper_error``, ``license``, ``source``. The fields
            computed here (``input_shape``, ``preprocessing``, ``params``, ``flops``, ``layers``,
            ``files``, versions) replace any given.
        preprocessing: the fitted preprocessing layers, in order (built or buildable on the
            model's input shape); their configs go to metadata, their weights to
            ``preprocessing.weights.h5``.
        architecture, architecture_kwargs: zoo name and builder arguments, for a model the zoo
            did not build.
        overwrite: replace an existing folder (only once the new one is complete).

    Returns:
        The preset folder.

    Raises:
        ValueError: the architecture is unknown, or ``metadata`` lacks ``dataset``.
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        PresetError: ``path`` exists but is not a preset folder (never replaced, even with
            ``overwrite``), or a weight of ``model`` is NaN or infinite.
    """
    if architecture is None:
        known = registry.architecture_of(model)
        if known is None:
            raise ValueError(
                "The architecture of `model` is unknown (not built by nin_keras.zoo.create_model, or built with "
                "arguments JSON cannot hold); pass `architecture` and `architecture_kwargs` naming the zoo builder "
                "and JSON arguments that rebuild it."
            )
        architecture, architecture_kwargs = known
    registry.get_model_entry(architecture)
    if not isinstance(metadata, Mapping) or not isinstance(metadata.get("dataset"), str):
        raise ValueError("`metadata` must be a mapping with at least a 'dataset' name.")
    check_replaceable(path, overwrite)
    check_finite(model, f"the model for {path}")
    preprocessing = list(preprocessing or [])
    input_shape = list(model.input_shape[1:])
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": architecture,
        "kwargs": json.loads(json.dumps(dict(architecture_kwargs or {}))),
    }
    with atomic_dir(path, overwrite=overwrite) as tmp:
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        model.save_weights(tmp / WEIGHTS_FILE)
        if preprocessing:
            preprocessing_stack(preprocessing, input_shape).save_weights(tmp / PREPROCESSING_FILE)
        files = {
            name: {"sha256": sha256_file(tmp / name), "size": (tmp / name).stat().st_size}
            for name in (WEIGHTS_FILE, PREPROCESSING_FILE)
            if (tmp / name).exists()
        }
        full = {
            **dict(metadata),
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "input_shape": input_shape,
            "preprocessing": [keras.saving.serialize_keras_object(layer) for layer in preprocessing],
            "params": int(model.count_params()),
            "flops": int(count_flops(model)),
            "layers": weight_shapes(model),
            "files": files,
            "keras_version": keras.__version__,
            "nin_keras_version": nin_keras.__version__,
        }
        (tmp / METADATA_FILE).write_text(json.dumps(parse_metadata(full), indent=2, default=json_default) + "\n")
    return Path(path)


def check_replaceable(path: str | os.PathLike, overwrite: bool) -> None:
    """Refuse to write a preset at ``path`` where that would replace what the user did not ask
    to replace: anything without ``overwrite``, and with it anything but a preset folder."""
    path = Path(path)
    if not (path.exists() or path.is_symlink()):
        return
    if not overwrite:
        raise FileExistsError(f"{path} already exists (pass overwrite=True / --overwrite to replace it)")
    if not is_preset_folder(path):
        raise PresetError(f"{path} exists and is not a preset folder (it holds files other than "
                          f"{', '.join(sorted(PRESET_FILES))}, or no preset config.json); it is never replaced, "
                          "even with overwrite: choose another output folder")

