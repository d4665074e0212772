"""Reading presets: from a local folder, an ``http(s)://``/``file://`` URL or a zoo name, into
``PresetContents``: the loader below the classifier. ``ImageClassifier.from_preset``, the one
way in for users, reads through here; library code that needs a preset's architecture, builder
arguments or folder (publishing, compacting, fine-tuning) reads ``PresetContents`` directly.

Nothing in a preset can run code: the architecture is a registered zoo name and the
preprocessing layers are the library's preprocessing classes (``preprocessing_spec``). Every
file is a regular file inside the preset and is checked before it is read: a zoo name's along
the chain of trust (the weights index's sha256 of ``config.json`` and ``metadata.json``, the
metadata's of the weights), a folder's and a URL's against its metadata. Every size the JSON
declares (network and preprocessing weights, input shape) is compared with the weights files
before any weight is allocated.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import keras

from nin_keras.data.input_policy import InputPolicy, policy_from_metadata
from nin_keras.errors import PresetError, WeightsMismatchError
from nin_keras.io_utils import read_json, sha256_file
from nin_keras.tf_startup import without_noise
from nin_keras.zoo import architectures, download, registry
from nin_keras.zoo.pretrained import PretrainedConfig
from nin_keras.zoo.preset_format import (
    CONFIG_FILE,
    MAX_JSON_BYTES,
    METADATA_FILE,
    PREPROCESSING_FILE,
    WEIGHTS_FILE,
    check_finite,
    parse_config,
    parse_metadata,
    planned_weight_shapes,
    preprocessing_stack,
    preset_file,
    read_preset_json,
)
from nin_keras.zoo.preprocessing_spec import preprocessing_layers

_URL_SCHEMES = ("http://", "https://", "file://")


class PresetContents:
    """What a preset folder holds, loaded: the network, its fitted preprocessing layers and its
    metadata (``ImageClassifier.from_loaded`` makes them a classifier).

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


def read_preset(preset: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None) -> PresetContents:
    """Read a preset: a local folder, an ``http(s)://``/``file://`` URL of a folder, or a zoo name
    (``ImageClassifier.from_preset`` gives it as a classifier).

    A zoo name (``"nin_mnist"`` for the default weights, ``"nin_cifar10.caffe"`` for a tag) is
    resolved as described in ``nin_keras.zoo.download`` (bundled, cache, mirror) and every file is
    checked along the chain of trust: the weights index's sha256 of ``config.json`` and
    ``metadata.json``, the metadata's of the weights files. A URL's ``config.json`` and ``metadata.json`` are
    validated instead of hashed (no registry vouches for them; a copy that does not parse never
    enters the cache), its weights checked against the metadata's sha256 and size.

    Raises:
        PresetError: a file is missing, outside the folder, malformed or altered, a preprocessing
            layer is not one of the library's preprocessing classes, or a declared size does not
            fit the weights files.
        WeightsMismatchError: the weights do not fit the architecture in config.json (names the layer).
        ValueError: unknown zoo name (with close matches).
        DownloadError, HashMismatchError: a file could not be fetched or verified.
    """
    ref = os.fspath(preset)
    # A fetched preset's files were hashed on the way in; a local folder's are hashed on loading.
    return load_folder(_resolve(ref, cache_dir), verified=not os.path.isdir(ref))


#: What a preset can be, said when something else was given.
_PRESET_IS = ("a preset is a zoo name with weights (`nin-keras models --pretrained`), a preset folder "
              "(config.json, model.weights.h5, metadata.json) or its URL")
#: Files that mark an exported artifact folder (SavedModel, web page).
_EXPORT_MARKERS = ("saved_model.pb", "model.onnx")


def _resolve(ref: str, cache_dir: str | os.PathLike | None) -> Path:
    exported = os.path.isfile(ref) or (os.path.isdir(ref) and not os.path.isfile(os.path.join(ref, CONFIG_FILE))
                                       and any(os.path.isfile(os.path.join(ref, m)) for m in _EXPORT_MARKERS))
    if exported:
        raise PresetError(f"{ref} is not a preset but a {'file' if os.path.isfile(ref) else 'folder'}: {_PRESET_IS}. "
                          "Exported artifacts (.tflite, .onnx, SavedModel and web folders) run with `nin-keras "
                          "predict` (nin_keras.deploy.Predictor).")
    if os.path.isdir(ref):
        return Path(ref)
    if ref.startswith(_URL_SCHEMES):
        return _fetch_url_preset(ref, cache_dir)
    if os.sep in ref or ref.startswith("."):
        raise PresetError(f"Preset folder {ref} does not exist ({_PRESET_IS}).")
    return resolve_registered(*registry.get_pretrained_config(ref), cache_dir)


def resolve_registered(entry: registry.ModelEntry, config: PretrainedConfig,
                        cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder of a registered weight set, every file verified along the chain of trust: the
    index's sha256 of ``config.json`` and ``metadata.json``, then the metadata's of the weights.
    Each file is hashed once here (``load_folder(..., verified=True)`` does not hash again)."""
    name = entry.preset_name(config.tag)
    anchors = download.resolve_files(name, config.file_hashes, config.urls, cache_dir=cache_dir, sizes=config.file_sizes)
    metadata = parse_metadata(read_preset_json(anchors, METADATA_FILE), str(anchors / METADATA_FILE))
    listed = metadata["files"]
    # The anchors are hashed again with the weights (a few kB) so that all files come from one folder.
    return download.resolve_files(name, {**config.file_hashes, **{n: info["sha256"] for n, info in listed.items()}},
                                  config.urls, cache_dir=cache_dir,
                                  sizes={**config.file_sizes, **{n: info["size"] for n, info in listed.items()}})


def _fetch_url_preset(url: str, cache_dir: str | os.PathLike | None) -> Path:
    """Fetch a URL preset's files into the cache. No registry vouches for its config and metadata,
    so they are validated instead: a copy that does not parse never enters the cache, and a cached
    one that does not (any more) is fetched again. The weights are checked against the metadata's
    sha256 and size."""
    folder = "url-" + hashlib.sha256(url.encode()).hexdigest()[:16]
    base = url.rstrip("/")

    def get(name: str, sha256: str | None = None, size: int = MAX_JSON_BYTES, parse=None) -> Path:
        source = download.join_url(base, name)
        validate = None if parse is None else lambda path: parse(read_json(path, source, PresetError), source)
        return download.fetch(f"{folder}/{name}", sha256, [source], cache_dir, mirror=False, max_bytes=size,
                              validate=validate)

    local = get(CONFIG_FILE, parse=parse_config).parent
    metadata_source = download.join_url(base, METADATA_FILE)
    metadata = parse_metadata(read_json(get(METADATA_FILE, parse=parse_metadata), metadata_source, PresetError),
                              metadata_source)
    for name, info in metadata["files"].items():
        get(name, info["sha256"], info["size"])
    return local


def load_folder(folder: Path, verified: bool = False) -> PresetContents:
    """Load a preset folder; ``verified``: its files' sha256 were just checked (registry path)."""
    architecture, kwargs = parse_config(read_preset_json(folder, CONFIG_FILE), str(folder / CONFIG_FILE))
    metadata = parse_metadata(read_preset_json(folder, METADATA_FILE), str(folder / METADATA_FILE))
    if WEIGHTS_FILE not in metadata["files"]:
        raise PresetError(f"{folder / METADATA_FILE}: 'files' does not list {WEIGHTS_FILE}.")
    for name, info in metadata["files"].items():
        _verify_file(folder, name, info, hash_contents=not verified)
    _check_declared_sizes(kwargs, metadata, folder)
    model = _build_network(architecture, kwargs, metadata, folder)
    _load_weights(model, folder / WEIGHTS_FILE, f"does not fit {architecture!r}")
    preprocessing = _load_preprocessing(folder, metadata)
    return PresetContents(model, preprocessing, metadata, architecture, kwargs, folder)


def _build_network(architecture: str, kwargs: Mapping[str, Any], metadata: Mapping[str, Any],
                   folder: Path) -> keras.Model:
    """The network of ``config.json``, its weight shapes compared with the metadata's record (which
    ``_check_declared_sizes`` bounded by the weights file) before a single weight is allocated, and
    its input with the metadata's ``input_shape``.

    Raises:
        PresetError: the builder refuses the kwargs, or the input shapes disagree.
        WeightsMismatchError: a layer's weight shapes differ from the record (names the layer).
    """
    def build() -> keras.Model:
        return architectures.build_architecture(architecture, **kwargs)

    try:
        _check_shapes(planned_weight_shapes(build), metadata["layers"], architecture, folder / WEIGHTS_FILE)
        model = build()
    except (TypeError, ValueError) as err:
        raise PresetError(f"{folder / CONFIG_FILE}: cannot build {architecture!r} with kwargs {kwargs}: {err}") from err
    if list(model.input_shape[1:]) != metadata["input_shape"]:
        raise PresetError(f"{folder / METADATA_FILE}: 'input_shape' is {metadata['input_shape']}, but the network "
                          f"{architecture!r} of {CONFIG_FILE} takes {list(model.input_shape[1:])}.")
    return model


def _verify_file(folder: Path, name: str, info: Mapping[str, Any], hash_contents: bool = True) -> None:
    """A listed file must be a regular file inside ``folder`` (``preset_file``) with the listed
    size and sha256 (the hash is skipped with ``hash_contents=False``, for files the caller has
    just verified)."""
    try:
        path = preset_file(folder, name)
    except PresetError as err:
        raise PresetError(f"{err} ({name} is listed in {METADATA_FILE}.)") from None
    size = path.stat().st_size
    if size != info["size"]:
        raise PresetError(f"{path} is altered or corrupt: {size} bytes, {METADATA_FILE} says {info['size']}.")
    if not hash_contents:
        return
    actual = sha256_file(path)
    if actual != info["sha256"]:
        raise PresetError(f"{path} is altered or corrupt: sha256 {actual}, {METADATA_FILE} says {info['sha256']}.")


def _check_declared_sizes(kwargs: Mapping[str, Any], metadata: Mapping[str, Any], folder: Path) -> None:
    """Check the sizes config and metadata declare against the verified weights file, before the
    model is built: building allocates every weight, so a config claiming 2,000,000 classes would
    take gigabytes before the shape check could refuse it.

    Raises:
        PresetError: ``layers`` records more weight values than the weights file can hold (at
            least one byte each).
        WeightsMismatchError: ``classes`` differs from the outputs of the classifier (the last
            layer with weights, whose last weight holds one value per class).
    """
    layers = metadata["layers"]
    recorded = sum(math.prod(shape) for shapes in layers.values() for shape in shapes)
    size = metadata["files"][WEIGHTS_FILE]["size"]
    if recorded > size:
        raise PresetError(f"{folder / METADATA_FILE}: 'layers' records {recorded} weight values, more than "
                          f"{WEIGHTS_FILE} ({size} bytes) holds.")
    classes = kwargs.get("classes")
    if not isinstance(classes, (int, float)) or isinstance(classes, bool) or kwargs.get("include_top", True) is False:
        return  # absent, or a type the builder itself refuses
    classifier, shapes = next(reversed(layers.items()), (None, []))
    outputs = shapes[-1][-1] if shapes and shapes[-1] else None
    if classes != outputs:
        raise WeightsMismatchError(f"{folder / CONFIG_FILE}: 'classes' is {classes!r}, but the classifier "
                                   f"{classifier!r} in {WEIGHTS_FILE} has {outputs} outputs.")


def _load_weights(target: keras.Model, path: Path, misfit: str) -> None:
    """``target.load_weights(path)``, with the file's faults as library errors naming it.

    Raises:
        PresetError: not a readable weights file (truncated, random or foreign bytes: h5py
            raises ``OSError``, ``KeyError`` or ``RuntimeError``).
        WeightsMismatchError: readable, but the weights do not fit ``target`` (``misfit`` says how).
    """
    try:
        target.load_weights(path)
    except ValueError as err:
        raise WeightsMismatchError(f"{path} {misfit}: {err}") from err
    except (OSError, KeyError, RuntimeError) as err:
        raise PresetError(f"{path} is not a readable Keras weights file ({type(err).__name__}: {err}).") from err
    check_finite(target, str(path))


def _check_shapes(actual: Mapping[str, list], expected: Mapping[str, list], network: str, weights_path: Path) -> None:
    """Compare a network's per-layer weight shapes with the preset's record, naming the first misfit."""
    for name, shapes in actual.items():
        if name not in expected:
            raise WeightsMismatchError(f"Layer {name!r} of {network!r} has no weights in {weights_path}.")
        if expected[name] != shapes:
            raise WeightsMismatchError(
                f"Layer {name!r} of {network!r} has weight shapes {shapes}, {weights_path} holds {expected[name]}."
            )
    extra = sorted(set(expected) - set(actual))
    if extra:
        raise WeightsMismatchError(f"{weights_path} has weights for layers {extra} that {network!r} lacks.")


@without_noise()  # a float16 ZCA matrix is the library's first float16 op: oneDNN's DT_HALF line
def _load_preprocessing(folder: Path, metadata: Mapping[str, Any]) -> list[keras.layers.Layer]:
    """The preprocessing layers, every size checked before they are built (``preprocessing_spec``)."""
    specs, input_shape = metadata.get("preprocessing", []), metadata["input_shape"]
    if not specs:
        return []
    weights = folder / PREPROCESSING_FILE
    if not weights.exists():
        raise PresetError(f"Preset {folder} has preprocessing layers but no {PREPROCESSING_FILE}.")
    if PREPROCESSING_FILE not in metadata["files"]:  # listed files are verified; others never load
        raise PresetError(f"{folder / METADATA_FILE}: 'files' does not list {PREPROCESSING_FILE}, so it cannot be verified.")
    layers = preprocessing_layers(specs, input_shape, weights, str(folder / METADATA_FILE))
    try:
        stack = preprocessing_stack(layers, input_shape)
    except (TypeError, ValueError) as err:
        raise PresetError(f"{folder / METADATA_FILE}: the preprocessing layers cannot take 'input_shape' "
                          f"{input_shape}: {err}") from err
    _load_weights(stack, weights, f"does not fit the preprocessing layers in {METADATA_FILE}")
    return layers
