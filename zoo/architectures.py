"""Building a zoo architecture by name (``build_architecture``) and telling which architecture
built a model (``architecture_of``), what ``save_preset`` writes into a preset's ``config.json``.

The architecture travels in the model itself, so that a copy made by ``keras.models.clone_model``
or loaded from a ``.keras`` file still knows it: a zoo network is a ``ZooModel``, a functional
``keras.Model`` whose config adds ``architecture`` and ``architecture_kwargs`` to the layer graph.
``clone_model`` rebuilds a functional model as ``type(model)(inputs, outputs, name=...)`` and copies
nothing else (Keras turns any other subclass into a plain functional model), so the two values
are attributes of the model's class: one ``ZooModel`` subclass per architecture and arguments
(``_model_class``), all serialized under the one registered name ``nin_keras>ZooModel``. Loading
such a ``.keras`` file in a new process needs this module imported first.
"""

from __future__ import annotations

import json
from typing import Any

import keras

from nin_keras.zoo.registry import get_model_entry


@keras.saving.register_keras_serializable(package="nin_keras")
class ZooModel(keras.Model):
    """A network built by ``build_architecture``: a functional model that records its zoo
    ``architecture`` name and builder arguments (``architecture_kwargs``) in its config."""

    architecture: str | None = None
    architecture_kwargs: dict[str, Any] = {}

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "architecture": self.architecture,
                "architecture_kwargs": json.loads(json.dumps(self.architecture_kwargs))}

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> ZooModel:
        config = dict(config)
        # An unregistered name is refused here, and looking it up loads the built-in entries,
        # whose layers the graph below is deserialized with.
        entry = get_model_entry(config.pop("architecture"))
        kind = _model_class(entry.name, config.pop("architecture_kwargs"))
        # Keras's own functional revival, for the class that carries this architecture.
        return super(ZooModel, kind).from_config(config, custom_objects=custom_objects)


_CLASSES: dict[tuple[str, str], type[ZooModel]] = {}


def _model_class(architecture: str, kwargs: dict[str, Any]) -> type[ZooModel]:
    """The ``ZooModel`` subclass of one architecture and its arguments (made once)."""
    key = (architecture, json.dumps(kwargs, sort_keys=True))
    if key not in _CLASSES:
        kind = type("ZooModel", (ZooModel,), {"architecture": architecture, "architecture_kwargs": json.loads(key[1]),
                                              "__module__": __name__})
        # Serialized as ``nin_keras>ZooModel`` like the base (whose from_config picks the class
        # back from the config), so a .keras file names no per-architecture class.
        _CLASSES[key] = keras.saving.register_keras_serializable(package="nin_keras", name="ZooModel")(kind)
    return _CLASSES[key]


def build_architecture(name: str, **kwargs: Any) -> keras.Model:
    """Zoo architecture ``name`` with random weights: ``builder(**defaults, **kwargs)``, nothing
    else (what rebuilding a preset's recorded architecture needs; users call ``create_model``).

    The model is a ``ZooModel`` recording its architecture name and keyword arguments, so
    ``save_preset`` can write them to the preset's ``config.json``; with an argument JSON cannot
    hold (e.g. a Python callable) it is the builder's own model, which no preset can record.
    """
    entry = get_model_entry(name)
    arguments = {**entry.defaults, **kwargs}
    built = entry.builder(**arguments)
    try:
        kind = _model_class(entry.name, json.loads(json.dumps(arguments)))
    except TypeError:
        return built
    # One tensor in and out, as the builder made them (a list of one warns on every call).
    return kind(built.input, built.output, name=built.name)


def architecture_of(model: keras.Model) -> tuple[str, dict[str, Any]] | None:
    """``(zoo name, builder kwargs)`` of a model built by the zoo (or a clone or reload of one),
    else None."""
    if not isinstance(model, ZooModel):
        return None
    return model.architecture, json.loads(json.dumps(model.architecture_kwargs))
