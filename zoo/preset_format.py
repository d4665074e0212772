"""The preset folder format: its files, and validating what they hold before anything is built.

A preset folder holds::

    config.json               {"format": "nin_keras.preset", "format_version": 1,
                               "architecture": "<zoo name>", "kwargs": {<builder arguments>}}
    model.weights.h5          the network's weights (Keras format: ``model.load_weights`` reads it)
    preprocessing.weights.h5  fitted statistics of the preprocessing layers (ZCA mean/matrix, ...)
    metadata.json             dataset, class names, input shape, input policy (optional: how an
                              image file becomes the input; default: the data set's, see
                              ``nin_keras.data.input_policy``), preprocessing spec (serialized
                              Keras layers), metrics and the command that measured them, paper
                              error, parameters, FLOPs, per-layer weight shapes, each weights
                              file's size and sha256, license, source

``preset_writer.save_preset`` writes it, ``preset_loader.read_preset`` reads it; both go through this
module's parsers and helpers.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from nin_keras.arguments import is_whole
from nin_keras.data.input_policy import InputPolicy
from nin_keras.errors import PresetError
from nin_keras.io_utils import read_json
from nin_keras.zoo import registry

FORMAT = "nin_keras.preset"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
METADATA_FILE = "metadata.json"
WEIGHTS_FILE = "model.weights.h5"
PREPROCESSING_FILE = "preprocessing.weights.h5"
#: Largest ``config.json`` / ``metadata.json`` read from a folder or fetched for a URL preset (no
#: registry lists their sizes; the published ones are under 40 kB).
MAX_JSON_BYTES = 16 << 20
#: Bounds of a preset's ``input_shape``: layers size buffers by it before any weight is compared
#: (``LocalContrastNormalization`` holds a side x side filter, ``ZCAWhitening`` a values x values
#: matrix), so a declared shape must not reach gigabytes. ImageNet-sized inputs are far below.
MAX_INPUT_SIDE = 4096
MAX_INPUT_VALUES = 1 << 24


def preset_file(folder: Path, name: str) -> Path:
    """``folder / name``, which must be a regular file inside ``folder``: a link is followed only
    when it stays inside (nothing outside the preset is read, nor its content echoed in a message),
    and a FIFO or device is refused before it is opened (reading one could block for ever).

    Raises:
        PresetError: missing, a link leading outside the folder, or not a regular file.
    """
    path = folder / name
    if not path.exists() and not path.is_symlink():
        raise PresetError(f"Preset {folder} has no {name}.")
    if not path.resolve().is_relative_to(folder.resolve()):
        raise PresetError(f"{path} links to a file outside the preset folder; refusing to read it.")
    if not path.is_file():
        raise PresetError(f"{path} is not a regular file; refusing to read it.")
    return path


#: Every name a preset folder may hold; a folder with anything else is not one the library wrote.
PRESET_FILES = frozenset({CONFIG_FILE, METADATA_FILE, WEIGHTS_FILE, PREPROCESSING_FILE})


def is_preset_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder the library wrote as a preset: preset files only, and a
    ``config.json`` of this format. Commands that replace a preset (``overwrite=True``) replace
    only such a folder, so a mistyped ``--out`` never deletes a folder of the user's own files."""
    path = Path(path)
    if path.is_symlink() or not path.is_dir():
        return False
    names = {entry.name for entry in path.iterdir()}
    if not names <= PRESET_FILES or CONFIG_FILE not in names:
        return False
    try:
        return read_preset_json(path, CONFIG_FILE).get("format") == FORMAT
    except (PresetError, AttributeError):
        return False


def read_preset_json(folder: Path, file_name: str) -> Any:
    """Parse a preset folder's JSON file (``preset_file`` checks; at most ``MAX_JSON_BYTES``).

    Raises:
        PresetError: the file is missing, outside the folder, not a regular file, too large or not JSON.
    """
    path = preset_file(folder, file_name)
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise PresetError(f"{path} is {size} bytes, more than a preset's JSON may hold ({MAX_JSON_BYTES}).")
    return read_json(path, error=PresetError)


def parse_config(config: Any, source: str = CONFIG_FILE) -> tuple[str, dict[str, Any]]:
    """Validate a parsed ``config.json``; return ``(architecture, kwargs)``.

    Raises:
        PresetError: not an object, wrong format or version, architecture not a registered zoo
            name, or kwargs not an object (or setting ``weights``).
    """
    if not isinstance(config, dict):
        raise PresetError(f"{source} must hold a JSON object, got {type(config).__name__}.")
    if config.get("format") != FORMAT:
        raise PresetError(f"{source}: 'format' must be {FORMAT!r}, got {config.get('format')!r}.")
    version = config.get("format_version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise PresetError(f"{source}: unsupported 'format_version' {version!r} (this library reads {FORMAT_VERSION}).")
    architecture = config.get("architecture")
    if not isinstance(architecture, str):
        raise PresetError(f"{source}: 'architecture' must be a zoo model name, got {architecture!r}.")
    try:
        registry.get_model_entry(architecture)
    except ValueError as err:
        raise PresetError(f"{source}: {err}") from err
    kwargs = config.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise PresetError(f"{source}: 'kwargs' must be an object, got {type(kwargs).__name__}.")
    if "weights" in kwargs:
        # The weights are the preset's model.weights.h5; a path here would read any file on disk.
        raise PresetError(f"{source}: 'kwargs' must not set 'weights'.")
    return architecture, kwargs


def parse_metadata(metadata: Any, source: str = METADATA_FILE) -> dict[str, Any]:
    """Validate a parsed ``metadata.json`` (the fields loading relies on); return it.

    Raises:
        PresetError: a required field is missing or has the wrong type.
    """
    if not isinstance(metadata, dict):
        raise PresetError(f"{source} must hold a JSON object, got {type(metadata).__name__}.")

    def check(key: str, ok: bool, what: str) -> None:
        if not ok:
            raise PresetError(f"{source}: {key!r} must be {what}, got {metadata.get(key)!r}.")

    check("dataset", isinstance(metadata.get("dataset"), str), "a data set name")
    shape = metadata.get("input_shape")
    check("input_shape", isinstance(shape, list) and all(d is None or is_whole(d) and d > 0 for d in shape), "a list of positive ints")
    known = [d for d in shape if d is not None]
    check("input_shape", all(d <= MAX_INPUT_SIDE for d in known) and math.prod(known) <= MAX_INPUT_VALUES,
          f"at most {MAX_INPUT_SIDE} per dimension and {MAX_INPUT_VALUES} values")
    files = metadata.get("files")
    check(
        "files",
        isinstance(files, dict)
        and all(isinstance(v, dict) and isinstance(v.get("sha256"), str) and is_whole(v.get("size")) and v["size"] >= 0
                for v in files.values()),
        'an object {file: {"sha256": str, "size": int}}',
    )
    # Names only: a path ("../../etc/hostname", "/etc/hostname") would make loading hash, and its
    # error message disclose, a file outside the preset.
    outside = [name for name in files if not _is_plain_name(name)]
    if outside:
        raise PresetError(f"{source}: 'files' may only name files inside the preset folder, got {outside}.")
    layers = metadata.get("layers")
    check(
        "layers",
        isinstance(layers, dict)
        and all(isinstance(v, list) and all(isinstance(s, list) and all(is_whole(d) for d in s) for s in v) for v in layers.values()),
        "an object {layer: [weight shapes]}",
    )
    check("preprocessing", isinstance(metadata.get("preprocessing", []), list), "a list of layer configs")
    names = metadata.get("class_names")
    check("class_names", names is None or isinstance(names, list) and all(isinstance(n, str) for n in names), "a list of strings")
    if metadata.get("input_policy") is not None:
        try:
            InputPolicy.from_dict(metadata["input_policy"])
        except ValueError as err:
            raise PresetError(f"{source}: 'input_policy' is malformed: {err}") from err
    return metadata


def _is_plain_name(name: str) -> bool:
    """A file name without any path: no separator, not ``.``/``..``, not empty, no NUL."""
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0")


def weight_shapes(model: keras.Model) -> dict[str, list[list[int]]]:
    """Top-level layer name -> shapes of its weights, for layers that have weights."""
    return {layer.name: [list(w.shape) for w in layer.weights] for layer in model.layers if layer.weights}


def planned_weight_shapes(build: Callable[[], keras.Model]) -> dict[str, list[list[int]]]:
    """``weight_shapes(build())`` without allocating a single weight.

    Inside a ``keras.StatelessScope`` a variable records its shape and initializer and takes no
    memory, so a config asking for a gigabyte network can be compared with the weights file before
    anything is spent. Keras queues such variables for the next scope exit to initialize; the
    probe's are taken off that queue (Keras offers no public call for it), or that exit would
    allocate them after all.
    """
    try:
        from keras.src.backend.common import global_state
    except ImportError:  # a Keras without this internal: build for real, as before the probe
        return weight_shapes(build())

    queued = list(global_state.get_global_attribute("uninitialized_variables") or [])
    try:
        with keras.StatelessScope(initialize_variables=False):
            return weight_shapes(build())
    finally:
        global_state.set_global_attribute("uninitialized_variables", queued)


def json_default(value: Any) -> Any:
    # Layer configs hold tuples and NumPy scalars; JSON has lists and plain numbers.
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def preprocessing_stack(layers: Sequence[keras.layers.Layer], input_shape: Sequence[int | None]) -> keras.Sequential:
    """The layers in a built Sequential: Keras's own weights format reads and writes them. Its
    name is fixed (Keras's default counts Sequentials per process, and the file records it), so
    equal preprocessing gives byte-identical files, which git and a content-addressed store keep once."""
    stack = keras.Sequential(list(layers), name="preprocessing")
    stack.build((None, *input_shape))
    return stack


def check_finite(model: keras.Model, what: str) -> None:
    """Refuse a model with a NaN or infinite weight: a diverged run must not pass for a result,
    on the way into a preset folder or out of one."""
    for variable in model.weights:
        if not np.all(np.isfinite(keras.ops.convert_to_numpy(variable))):
            raise PresetError(f"{what} has NaN or infinite values in {variable.path}")
