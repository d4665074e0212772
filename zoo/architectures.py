"""Building a zoo architecture by name (``build_architecture``) and telling which architecture
built a model (``architecture_of``), what ``save_preset`` writes into a preset's ``config.json``."""

from __future__ import annotations

import json
import weakref
from typing import Any

import keras

from nin_keras.zoo.registry import get_model_entry

# Which zoo architecture (name, kwargs) built each model, so presets can record it.
_ARCHITECTURES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def build_architecture(name: str, **kwargs: Any) -> keras.Model:
    """Zoo architecture ``name`` with random weights: ``builder(**defaults, **kwargs)``, nothing
    else (what rebuilding a preset's recorded architecture needs; users call ``create_model``).

    The model remembers its architecture name and keyword arguments (when JSON can hold them), so
    ``save_preset`` can write them to the preset's ``config.json``.
    """
    entry = get_model_entry(name)
    arguments = {**entry.defaults, **kwargs}
    model = entry.builder(**arguments)
    try:
        _ARCHITECTURES[model] = (entry.name, json.loads(json.dumps(arguments)))
    except TypeError:  # an argument JSON cannot hold (e.g. a Python callable): no preset for this model
        pass
    return model


def architecture_of(model: keras.Model) -> tuple[str, dict[str, Any]] | None:
    """``(zoo name, builder kwargs)`` of a model built by the zoo, else None."""
    return _ARCHITECTURES.get(model)
