"""Writing a preset folder (``save_preset``): the network's weights, the fitted preprocessing and
the metadata, atomically, in the format of ``nin_keras.zoo.preset_format``. Below the classifier,
whose ``save_to_preset`` writes through it."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import keras

import nin_keras
from nin_keras.errors import Argument, OutputExistsError, PresetError
from nin_keras.io_utils import atomic_dir, sha256_file
from nin_keras.models import count_flops
from nin_keras.zoo import registry
from nin_keras.zoo.architectures import architecture_of
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
        OutputExistsError: (a ``FileExistsError``) ``path`` exists and ``overwrite`` is False.
        PresetError: ``path`` exists but is not a preset folder (never replaced, even with
            ``overwrite``), or a weight of ``model`` is NaN or infinite.
    """
    if architecture is None:
        known = architecture_of(model)
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
        raise OutputExistsError(f"{path} already exists (pass ", Argument("overwrite", True), " to replace it)")
    if not is_preset_folder(path):
        raise PresetError(f"{path} exists and is not a preset folder (it holds files other than "
                          f"{', '.join(sorted(PRESET_FILES))}, or no preset config.json); it is never replaced, "
                          "even with ", Argument("overwrite", True), ": choose another output folder")

