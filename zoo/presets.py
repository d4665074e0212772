"""Presets: a trained model as a folder (keras-hub style) that loads with no code from the user.

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

Loading follows Keras ``safe_mode``: the architecture is a registered zoo name and the
preprocessing layers must be registered Keras classes; nothing in a preset can run code.

Example:
    >>> preset = load_preset("nin_mnist")              # registry name, local folder or URL
    >>> preset.classifier().predict(uint8_images)      # raw images -> preprocessing -> network
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

import nin_keras
import nin_keras.layers  # noqa: F401  (registers the library's preprocessing layers for safe loading)
from nin_keras.data.input_policy import InputPolicy, policy_from_metadata
from nin_keras.errors import PresetError, WeightsMismatchError
from nin_keras.io_utils import atomic_dir, read_json, sha256_file
from nin_keras.models import count_flops
from nin_keras.zoo import download, registry
from nin_keras.zoo.classifier import ImageClassifier

FORMAT = "nin_keras.preset"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
METADATA_FILE = "metadata.json"
WEIGHTS_FILE = "model.weights.h5"
PREPROCESSING_FILE = "preprocessing.weights.h5"
_URL_SCHEMES = ("http://", "https://", "file://")
#: Largest ``config.json`` / ``metadata.json`` fetched for a URL preset (no registry lists their
#: sizes; the published ones are under 40 kB).
MAX_JSON_BYTES = 16 << 20


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


# --------------------------------------------------------------------------- parsing


def _read_json(folder: Path, file_name: str) -> Any:
    path = folder / file_name
    if not path.is_file():
        raise PresetError(f"Preset {folder} has no {file_name}.")
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
    check("input_shape", isinstance(shape, list) and all(d is None or _is_int(d) and d > 0 for d in shape), "a list of positive ints")
    files = metadata.get("files")
    check(
        "files",
        isinstance(files, dict)
        and all(isinstance(v, dict) and isinstance(v.get("sha256"), str) and _is_int(v.get("size")) and v["size"] >= 0
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
        and all(isinstance(v, list) and all(isinstance(s, list) and all(_is_int(d) for d in s) for s in v) for v in layers.values()),
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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_plain_name(name: str) -> bool:
    """A file name without any path: no separator, not ``.``/``..``, not empty, no NUL."""
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0")


# --------------------------------------------------------------------------- saving


def _weight_shapes(model: keras.Model) -> dict[str, list[list[int]]]:
    """Top-level layer name -> shapes of its weights, for layers that have weights."""
    return {layer.name: [list(w.shape) for w in layer.weights] for layer in model.layers if layer.weights}


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
            _preprocessing_stack(preprocessing, input_shape).save_weights(tmp / PREPROCESSING_FILE)
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
            "layers": _weight_shapes(model),
            "files": files,
            "keras_version": keras.__version__,
            "nin_keras_version": nin_keras.__version__,
        }
        (tmp / METADATA_FILE).write_text(json.dumps(parse_metadata(full), indent=2, default=_json_default) + "\n")
    return Path(path)


def _json_default(value: Any) -> Any:
    # Layer configs hold tuples and NumPy scalars; JSON has lists and plain numbers.
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _preprocessing_stack(layers: Sequence[keras.layers.Layer], input_shape: Sequence[int | None]) -> keras.Sequential:
    """The layers in a built Sequential: Keras's own weights format reads and writes them."""
    stack = keras.Sequential(list(layers))
    stack.build((None, *input_shape))
    return stack


# --------------------------------------------------------------------------- loading


def load_preset(preset: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None) -> Preset:
    """Load a preset: a local folder, an ``http(s)://``/``file://`` URL of a folder, or a zoo name.

    A zoo name (``"nin_mnist"`` for the default weights, ``"nin_cifar10.caffe"`` for a tag) is
    resolved as described in ``nin_keras.zoo.download`` (bundled, cache, mirror) and every file is
    checked along the chain of trust: the weights index's sha256 of ``config.json`` and
    ``metadata.json``, the metadata's of the weights files. A URL's ``config.json`` and ``metadata.json`` are
    validated instead of hashed (no registry vouches for them; a copy that does not parse never
    enters the cache), its weights checked against the metadata's sha256 and size.

    Raises:
        PresetError: a file is missing, malformed or altered, or a layer class is not registered.
        WeightsMismatchError: the weights do not fit the architecture in config.json (names the layer).
        ValueError: unknown zoo name (with close matches).
        DownloadError, HashMismatchError: a file could not be fetched or verified.
    """
    ref = os.fspath(preset)
    # A fetched preset's files were hashed on the way in; a local folder's are hashed on loading.
    return _load_folder(_resolve(ref, cache_dir), verified=not os.path.isdir(ref))


def from_preset(preset: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None) -> ImageClassifier:
    """``load_preset(preset)`` as an ``ImageClassifier`` that takes raw images (see ``load_preset``
    for what ``preset`` may be); its ``backbone`` is the bare network."""
    return load_preset(preset, cache_dir=cache_dir).classifier()


def _resolve(ref: str, cache_dir: str | os.PathLike | None) -> Path:
    if os.path.isdir(ref):
        return Path(ref)
    if ref.startswith(_URL_SCHEMES):
        return _fetch_url_preset(ref, cache_dir)
    if os.sep in ref or ref.startswith("."):
        raise PresetError(f"Preset folder {ref} does not exist.")
    return _resolve_registered(*registry.get_pretrained_config(ref), cache_dir)


def _resolve_registered(entry: registry.ModelEntry, config: registry.PretrainedConfig,
                        cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder of a registered weight set, every file verified along the chain of trust: the
    index's sha256 of ``config.json`` and ``metadata.json``, then the metadata's of the weights.
    Each file is hashed once here (``_load_folder(..., verified=True)`` does not hash again)."""
    name = entry.preset_name(config.tag)
    anchors = download.resolve_files(name, config.file_hashes, config.urls, cache_dir=cache_dir, sizes=config.file_sizes)
    metadata = parse_metadata(_read_json(anchors, METADATA_FILE), str(anchors / METADATA_FILE))
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


def _load_folder(folder: Path, verified: bool = False) -> Preset:
    """Load a preset folder; ``verified``: its files' sha256 were just checked (registry path)."""
    architecture, kwargs = parse_config(_read_json(folder, CONFIG_FILE), str(folder / CONFIG_FILE))
    metadata = parse_metadata(_read_json(folder, METADATA_FILE), str(folder / METADATA_FILE))
    if WEIGHTS_FILE not in metadata["files"]:
        raise PresetError(f"{folder / METADATA_FILE}: 'files' does not list {WEIGHTS_FILE}.")
    for name, info in metadata["files"].items():
        _verify_file(folder, name, info, hash_contents=not verified)
    _check_declared_sizes(kwargs, metadata, folder)
    try:
        model = registry.build_architecture(architecture, **kwargs)
    except (TypeError, ValueError) as err:
        raise PresetError(f"{folder / CONFIG_FILE}: cannot build {architecture!r} with kwargs {kwargs}: {err}") from err
    _check_shapes(model, metadata["layers"], folder / WEIGHTS_FILE)
    _load_weights(model, folder / WEIGHTS_FILE, f"does not fit {architecture!r}")
    preprocessing = _load_preprocessing(folder, metadata)
    return Preset(model, preprocessing, metadata, architecture, kwargs, folder)


def _verify_file(folder: Path, name: str, info: Mapping[str, Any], hash_contents: bool = True) -> None:
    """A listed file must be a file inside ``folder`` with the listed size and sha256 (the hash is
    skipped with ``hash_contents=False``, for files the caller has just verified)."""
    path = folder / name
    if not path.is_file():
        raise PresetError(f"Preset {folder} has no {name} (listed in {METADATA_FILE}).")
    if not path.resolve().is_relative_to(folder.resolve()):
        raise PresetError(f"{path} links to a file outside the preset folder; refusing to read it.")
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


def _check_shapes(model: keras.Model, expected: Mapping[str, list], weights_path: Path) -> None:
    """Compare the model's per-layer weight shapes with the preset's record, naming the first misfit."""
    actual = _weight_shapes(model)
    for name, shapes in actual.items():
        if name not in expected:
            raise WeightsMismatchError(f"Layer {name!r} of {model.name!r} has no weights in {weights_path}.")
        if expected[name] != shapes:
            raise WeightsMismatchError(
                f"Layer {name!r} of {model.name!r} has weight shapes {shapes}, {weights_path} holds {expected[name]}."
            )
    extra = sorted(set(expected) - set(actual))
    if extra:
        raise WeightsMismatchError(f"{weights_path} has weights for layers {extra} that {model.name!r} lacks.")


def _load_preprocessing(folder: Path, metadata: Mapping[str, Any]) -> list[keras.layers.Layer]:
    layers = []
    for i, spec in enumerate(metadata.get("preprocessing", [])):
        where = f"{folder / METADATA_FILE}: preprocessing[{i}]"
        if not isinstance(spec, dict) or not isinstance(spec.get("class_name"), str):
            raise PresetError(f"{where} is not a serialized Keras layer.")
        try:
            layer = keras.saving.deserialize_keras_object(spec, safe_mode=True)
        except Exception as err:  # Keras raises TypeError/ValueError/KeyError for unknown or bad configs
            raise PresetError(f"{where}: cannot load layer class {spec['class_name']!r}: {err}") from err
        if not isinstance(layer, keras.layers.Layer):
            raise PresetError(f"{where}: {spec['class_name']!r} is not a Keras layer.")
        layers.append(layer)
    if not layers:
        return layers
    weights = folder / PREPROCESSING_FILE
    if not weights.is_file():
        raise PresetError(f"Preset {folder} has preprocessing layers but no {PREPROCESSING_FILE}.")
    if PREPROCESSING_FILE not in metadata["files"]:  # listed files are verified; others never load
        raise PresetError(f"{folder / METADATA_FILE}: 'files' does not list {PREPROCESSING_FILE}, so it cannot be verified.")
    _load_weights(_preprocessing_stack(layers, metadata["input_shape"]), weights,
                  f"does not fit the preprocessing layers in {METADATA_FILE}")
    return layers


# --------------------------------------------------------------------------- pretrained models


def load_pretrained(
    entry: registry.ModelEntry,
    config: registry.PretrainedConfig,
    arguments: Mapping[str, Any],
) -> keras.Model:
    """``create_model``'s pretrained path: load the weight set, then fit it to ``arguments``.

    The builder arguments start from the preset's; if ``arguments`` change them the new model is
    built and the weights copied by layer name (``transfer_weights``), leaving the classifier
    fresh where its shapes changed.
    """
    folder = _resolve_registered(entry, config)
    preset = _load_folder(folder, verified=True)
    if preset.architecture != entry.name:
        raise PresetError(f"{folder / CONFIG_FILE} is for {preset.architecture!r}, the registry expects {entry.name!r}.")
    # Compare as JSON (tuples vs lists) with the builders' include_top default made explicit.
    source_args = json.loads(json.dumps({"include_top": True, **preset.kwargs}))
    target_args = json.loads(json.dumps({**source_args, **arguments}))
    if target_args == source_args:
        return preset.model
    target = registry.build_architecture(entry.name, **target_args)
    fresh = classifier_layer_names(entry.name, target_args) if target_args.get("include_top", True) else set()
    transfer_weights(preset.model, target, fresh)
    return target


def classifier_layer_names(architecture: str, arguments: Mapping[str, Any]) -> set[str]:
    """Names of the layers ``include_top`` adds to zoo ``architecture`` built with ``arguments``
    (NIN: the last mlpconv, whose final 1x1 convolution has one map per class, and the GAP head)."""
    top = registry.build_architecture(architecture, **{**arguments, "include_top": True})
    body = registry.build_architecture(architecture, **{**arguments, "include_top": False})
    return {layer.name for layer in top.layers} - {layer.name for layer in body.layers}


def transfer_weights(source: keras.Model, target: keras.Model, fresh: Iterable[str] = ()) -> list[str]:
    """Copy weights from ``source`` into ``target`` layer by layer, matching top-level layer names.

    Args:
        source: the model holding the weights.
        target: the model to fill.
        fresh: names of target layers (the new classifier) that may be absent from ``source`` or
            differ in shape; their non-fitting weights keep their initialization.

    Returns:
        ``"layer/index"`` of every weight left at its initialization.

    Raises:
        WeightsMismatchError: a layer outside ``fresh`` is missing from ``source`` or has other
            weight shapes (the message names the layer and both shapes).
    """
    fresh = set(fresh)
    by_name = {layer.name: layer for layer in source.layers}
    skipped = []
    for layer in target.layers:
        if not layer.weights:
            continue
        src = by_name.get(layer.name)
        if src is None or len(src.weights) != len(layer.weights):
            if layer.name in fresh:
                skipped += [f"{layer.name}/{i}" for i in range(len(layer.weights))]
                continue
            have = "no such layer" if src is None else f"{len(src.weights)} weights, {len(layer.weights)} needed"
            raise WeightsMismatchError(f"Layer {layer.name!r} of {target.name!r} does not fit the pretrained {source.name!r}: {have}.")
        for i, (dst, value) in enumerate(zip(layer.weights, src.weights)):
            if tuple(dst.shape) == tuple(value.shape):
                dst.assign(keras.ops.convert_to_numpy(value))
            elif layer.name in fresh:
                skipped.append(f"{layer.name}/{i}")
            else:
                raise WeightsMismatchError(
                    f"Layer {layer.name!r} of {target.name!r}: weight {i} ({dst.path}) has shape {tuple(dst.shape)}, "
                    f"the pretrained {source.name!r} has {tuple(value.shape)}."
                )
    return skipped
