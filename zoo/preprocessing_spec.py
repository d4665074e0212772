"""A preset's preprocessing spec, checked against the preset's own files before any layer exists.

The spec is ``metadata.json``'s ``preprocessing``: serialized Keras layers. A folder's or URL's
metadata is covered by no hash, and building a layer allocates its weights, so a spec declaring a
``Dense`` of 200,000,000 units or a whitening matrix for a billion values would spend gigabytes
before ``load_weights`` could report the misfit. Here, before construction:

- only the library's preprocessing classes (``nin_keras.layers.PREPROCESSING_LAYERS``) are accepted,
  built with their own ``from_config`` (no class lookup by name or module);
- the size arguments are bounded by the input (a kernel no larger than the image);
- the weights a layer whose size grows faster than its input would create (``ZCAWhitening``'s
  values x values matrices, ``ConvWhitening``'s channels x channels kernel) are compared with the
  dataset shapes stored in ``preprocessing.weights.h5`` (h5py reads a shape without its values);
- the ``build_config`` a spec carries is dropped: the layers are built on the metadata's
  ``input_shape``, which ``parse_metadata`` bounds.

The other classes' buffers and weights are at most one input's size.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import keras

from nin_keras.arguments import is_whole
from nin_keras.errors import PresetError
from nin_keras.layers import PREPROCESSING_LAYERS, ConvWhitening, LocalContrastNormalization, ZCAWhitening
from nin_keras.zoo.preset_format import METADATA_FILE

_CLASSES = {cls.__name__: cls for cls in PREPROCESSING_LAYERS}
# Layers whose kernel_size is a spatial window: it must fit the image.
_WINDOWED = (ConvWhitening, LocalContrastNormalization)


def preprocessing_layers(specs: Sequence[Any], input_shape: Sequence[int | None], weights: Path | None,
                         source: str) -> list[keras.layers.Layer]:
    """The unbuilt layers of ``specs`` (the metadata's ``preprocessing``), every size checked.

    Args:
        specs: the serialized layers.
        input_shape: the metadata's ``input_shape`` (already bounded by ``parse_metadata``).
        weights: the verified ``preprocessing.weights.h5``, or None when the preset has none.
        source: how messages name the metadata file.

    Raises:
        PresetError: a spec that is not one of the preprocessing classes, a size argument out of
            bounds, or weights the spec would create that the weights file does not hold (the
            message names the file, the layer and the argument, or ``input_shape``).
    """
    stored = _stored_shapes(weights) if weights is not None else {}
    layers, used = [], {}
    for i, spec in enumerate(specs):
        where = f"{source}: preprocessing[{i}]"
        cls, config = _class_and_config(spec, where)
        _check_window(cls, config, input_shape, where)
        held = stored.get(_weights_key(cls, used), [])
        _check_sized_weights(cls, config, input_shape, held, f"{where} ({cls.__name__})",
                             weights.name if weights is not None else "the preset (no weights file)")
        try:
            layers.append(cls.from_config(config))
        except Exception as err:  # each class raises TypeError/ValueError/KeyError on bad arguments
            raise PresetError(f"{where}: cannot build {cls.__name__} from its config: {type(err).__name__}: {err}") from err
    return layers


def _class_and_config(spec: Any, where: str) -> tuple[type, dict[str, Any]]:
    if not isinstance(spec, Mapping) or not isinstance(spec.get("class_name"), str) \
            or not isinstance(spec.get("config", {}), Mapping):
        raise PresetError(f"{where} is not a serialized Keras layer.")
    cls = _CLASSES.get(spec["class_name"])
    if cls is None:
        raise PresetError(f"{where}: {spec['class_name']!r} is not a preprocessing layer class; a preset's "
                          f"preprocessing may only hold {sorted(_CLASSES)}.")
    return cls, dict(spec.get("config", {}))


def _check_window(cls: type, config: Mapping[str, Any], input_shape: Sequence[int | None], where: str) -> None:
    """A ``kernel_size`` must be a positive int that fits the image (``ConvWhitening``: its
    smallest side; ``LocalContrastNormalization``: its largest)."""
    if not issubclass(cls, _WINDOWED) or "kernel_size" not in config:
        return
    size = config["kernel_size"]
    sides = [d for d in input_shape[:2] if d is not None]
    largest = (min if cls is ConvWhitening else max)(sides, default=None)
    if not is_whole(size) or size < 1 or largest is not None and size > largest:
        raise PresetError(f"{where} ({cls.__name__}): 'kernel_size' must be a positive int no larger than "
                          f"{largest} for input_shape {list(input_shape)}, got {size!r}.")


def _weights_key(cls: type, used: dict[str, int]) -> str:
    """Where Keras stores a stack's layer in a weights file: ``layers/<class in snake case>``,
    numbered from the second of a class on (``zca_whitening_1``)."""
    name = re.sub("([a-z])([A-Z])", r"\1_\2", re.sub("(.)([A-Z][a-z]+)", r"\1_\2", cls.__name__)).lower()
    count = used.get(name, -1) + 1
    used[name] = count
    return f"layers/{name}" + (f"_{count}" if count else "")


def _check_sized_weights(cls: type, config: Mapping[str, Any], input_shape: Sequence[int | None],
                         held: list[tuple], layer: str, file: str) -> None:
    """Compare the weights of a layer that outgrows its input (``ZCAWhitening``: values x values
    matrices; ``ConvWhitening``: a k x k x channels x channels kernel) with those ``file`` holds
    for it, before they exist; name what a difference comes from: the metadata's ``input_shape``
    (the shape the held weights imply disagrees) or the layer's own argument."""
    if cls is ZCAWhitening:
        unit, argument, per_weight = "input values", "store_inverse", 0
        size = math.prod(input_shape) if None not in input_shape else None
        planned = [(size,)] + [(size, size)] * (2 if bool(config.get("store_inverse", True)) else 1)
    elif cls is ConvWhitening:
        unit, argument, per_weight = "channels", "kernel_size", 1
        size, k = input_shape[-1], config.get("kernel_size", 7)
        planned = [(k, k, size, size), (size,)]
    else:
        return
    if planned == held:
        return
    if not held:
        raise PresetError(f"{layer} would create weights {planned}, but {file} holds none for it.")
    implied = held[per_weight][0] if len(held) > per_weight and len(held[per_weight]) == 1 else None
    if implied != size:
        raise PresetError(f"{METADATA_FILE}: 'input_shape' {list(input_shape)} gives {layer} {size} {unit}, but "
                          f"{file} holds weights {held} for it, which imply {implied} {unit}.")
    raise PresetError(f"{layer}: its '{argument}' makes weights {planned}, but {file} holds {held}.")


def _stored_shapes(path: Path) -> dict[str, list[tuple]]:
    """``layers/<name>`` -> the shapes of its ``vars/0``, ``vars/1``, ... in ``path``, read without
    the values. The file's declared element count may not exceed its size (one byte a value is
    less than any float): a dataset can declare a shape its unwritten chunks never fill.

    Raises:
        PresetError: not readable by h5py, or declaring more values than it has bytes.
    """
    shapes: dict[str, list[tuple]] = {}
    try:
        with h5py.File(path, "r") as file:
            layers = file.get("layers")
            for name, group in (layers.items() if isinstance(layers, h5py.Group) else []):
                variables = group.get("vars")
                if isinstance(variables, h5py.Group):
                    shapes[f"layers/{name}"] = [tuple(variables[k].shape or ()) for k in
                                                sorted(variables, key=lambda k: (len(k), k))
                                                if isinstance(variables[k], h5py.Dataset)]
    except (OSError, KeyError, RuntimeError, ValueError) as err:
        raise PresetError(f"{path} is not a readable Keras weights file ({type(err).__name__}: {err}).") from err
    declared = sum(math.prod(s) for held in shapes.values() for s in held)
    if declared > path.stat().st_size:
        raise PresetError(f"{path} declares {declared} weight values, more than its {path.stat().st_size} bytes hold.")
    return shapes
