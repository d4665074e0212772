"""Pretrained weights into a changed architecture: ``create_model(name, pretrained=True, ...)``.

When ``create_model`` asks for other classes, another input shape or no top, the published
weight set is loaded and its weights copied layer by layer (by name) into the new network; the
classifier keeps its fresh initialization where its shapes changed (ready for fine-tuning).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import keras

from nin_keras.errors import PresetError, WeightsMismatchError
from nin_keras.zoo import registry
from nin_keras.zoo.architectures import build_architecture
from nin_keras.zoo.pretrained import PretrainedConfig
from nin_keras.zoo.preset_format import CONFIG_FILE
from nin_keras.zoo.preset_loader import load_folder, resolve_registered


def load_pretrained(
    entry: registry.ModelEntry,
    config: PretrainedConfig,
    arguments: Mapping[str, Any],
) -> keras.Model:
    """``create_model``'s pretrained path: load the weight set, then fit it to ``arguments``.

    The builder arguments start from the preset's; if ``arguments`` change them the new model is
    built and the weights copied by layer name (``transfer_weights``), leaving the classifier
    fresh where its shapes changed.
    """
    folder = resolve_registered(entry, config)
    preset = load_folder(folder, verified=True)
    if preset.architecture != entry.name:
        raise PresetError(f"{folder / CONFIG_FILE} is for {preset.architecture!r}, the registry expects {entry.name!r}.")
    # Compare as JSON (tuples vs lists) with the builders' include_top default made explicit.
    source_args = json.loads(json.dumps({"include_top": True, **preset.kwargs}))
    target_args = json.loads(json.dumps({**source_args, **arguments}))
    if target_args == source_args:
        return preset.model
    target = build_architecture(entry.name, **target_args)
    fresh = classifier_layer_names(entry.name, target_args) if target_args.get("include_top", True) else set()
    transfer_weights(preset.model, target, fresh)
    return target


def classifier_layer_names(architecture: str, arguments: Mapping[str, Any]) -> set[str]:
    """Names of the layers ``include_top`` adds to zoo ``architecture`` built with ``arguments``
    (NIN: the last mlpconv, whose final 1x1 convolution has one map per class, and the GAP head)."""
    top = build_architecture(architecture, **{**arguments, "include_top": True})
    body = build_architecture(architecture, **{**arguments, "include_top": False})
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
