"""What a recipe builds: its layers, its optimizer and its network (under its dtype policy)."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import keras
import numpy as np


def build_layers(configs: Sequence[Mapping[str, Any]]) -> list[keras.layers.Layer]:
    """Keras layers from a recipe's list of layer configs (preprocessing or augmentation)."""
    import nin_keras.layers  # noqa: F401  (registers the nin_keras layer classes)

    return [keras.layers.deserialize(dict(c)) for c in configs]


@dataclasses.dataclass
class Augmentation:
    """A recipe's training-only layers, in the order they apply to a batch: ``raw`` (before the
    preprocessing), ``augment`` (after it), then ``mixing`` (a ``MixUpCutMix`` or None)."""

    raw: list[keras.layers.Layer]
    augment: list[keras.layers.Layer]
    mixing: keras.layers.Layer | None


def build_augmentation(recipe, seed_epoch: tuple[int, int] | None = None) -> Augmentation:
    """A recipe's ``Augmentation``; with ``seed_epoch``, each layer seeded from ``(seed, epoch,
    position)``, positions counted over ``augmentation``, ``raw_augmentation``, ``mixing`` in that
    order (so a recipe with only ``augmentation`` keeps the seeds it had before the others existed)."""
    mixing = [recipe.mixing.layer_config()] if recipe.mixing is not None else []
    configs = [*recipe.augmentation, *recipe.raw_augmentation, *mixing]
    if seed_epoch is not None:
        seeds = np.random.default_rng([*seed_epoch, 1]).integers(0, 2**31 - 1, size=len(configs))
        configs = [{**c, "config": {**c.get("config", {}), "seed": int(s)}} for c, s in zip(configs, seeds)]
    layers = build_layers(configs)
    count = len(recipe.augmentation)
    return Augmentation(layers[count:count + len(recipe.raw_augmentation)], layers[:count],
                        layers[-1] if mixing else None)


def build_optimizer(
    config: Mapping[str, Any], weight_decay: Any = None, policy: str | None = None
) -> keras.optimizers.Optimizer:
    """The recipe's optimizer (``{"name": "sgd", "learning_rate": ..., ...}``), with decoupled
    weight decay when ``weight_decay`` (a ``WeightDecay`` or its recipe dict) asks for it, wrapped in a ``LossScaleOptimizer`` under the ``mixed_float16``
    dtype ``policy`` (float16 gradients underflow without loss scaling; bfloat16 ones do not)."""
    from nin_keras.train.recipes import WeightDecay

    options = dict(config)
    name = options.pop("name")
    if isinstance(weight_decay, Mapping):
        weight_decay = WeightDecay(float(weight_decay.get("value", 0.0)), weight_decay.get("mode", "l2"))
    if weight_decay is not None and weight_decay.decoupled:
        options["weight_decay"] = weight_decay.decoupled
    try:
        optimizer = keras.optimizers.deserialize({"class_name": name, "config": options})
    except (TypeError, ValueError) as e:
        raise ValueError(f"bad optimizer {name!r} with options {options}: {e}") from None
    if "weight_decay" in options:
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    if policy == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def is_decayed(variable) -> bool:
    """Kernels of convolutions and dense layers are decayed; biases and batch-norm parameters are not."""
    return variable.name.startswith("kernel")


def create_network(start, policy: str | None) -> keras.Model:
    """A ``NetworkStart``'s architecture (with its starting weights, if any), under the
    mixed-precision dtype ``policy`` when one is given (the policy is global in Keras, so it is set
    only while the layers are created)."""
    from nin_keras.zoo import create_model

    previous = keras.config.dtype_policy()
    if policy:
        keras.config.set_dtype_policy(policy)
    try:
        model = create_model(start.architecture, **start.kwargs)
    finally:
        keras.config.set_dtype_policy(previous)
    if start.weights is not None:
        model.set_weights(start.weights)
    return model
