"""The model registry: zoo names -> architecture builders and their published weight sets.

A zoo entry is one architecture: a builder registered with ``register_model`` (see
``zoo/models.py``), its default keyword arguments and the pretrained weight sets (*tags*)
published for it. A tag is weights only: every tag of a name loads into the network
``create_model(name)`` builds (variants such as batch normalization are names of their own,
``nin_cifar10_bn``). A weight set is a preset folder named ``<model>.<tag>`` (e.g.
``nin_cifar10.caffe``); the registry holds the sha256 of its ``config.json`` and
``metadata.json`` (from ``zoo/weights/index.json``, see ``nin_keras.zoo.index``), and the metadata
holds the weights files' sha256, so every copy (bundled, cached, downloaded) is checked along
that chain. The default tag of a name is its best published weights. A weight set's record is
``nin_keras.zoo.pretrained``, building an architecture by name ``nin_keras.zoo.architectures``, and
``create_model`` (with or without weights) ``nin_keras.zoo.builder``.

Example:
    >>> from nin_keras import zoo
    >>> zoo.list_models("nin_cifar10*")
    ['nin_cifar10', 'nin_cifar100', 'nin_cifar100_bn', 'nin_cifar10_bn']
    >>> zoo.list_models("nin_mnist", pretrained=True)
    ['nin_mnist.fast', 'nin_mnist.modern']
    >>> model = zoo.create_model("nin_mnist", pretrained=True)          # best published weights
    >>> tuned = zoo.create_model("nin_mnist", pretrained=True, classes=5)  # body reused, new classifier
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras

from nin_keras.errors import ArgumentError, Call
from nin_keras.zoo.pretrained import PretrainedConfig, best_tag

Builder = Callable[..., keras.Model]


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """A registered zoo model: ``builder(**defaults, **kwargs)`` builds it."""

    name: str
    builder: Builder
    dataset: str
    defaults: Mapping[str, Any]
    paper_error: float | None
    description: str
    pretrained: Mapping[str, PretrainedConfig]

    def preset_name(self, tag: str) -> str:
        return f"{self.name}.{tag}"

    @property
    def default_tag(self) -> str | None:
        """What ``pretrained=True`` loads: ``best_tag`` of the published weight sets."""
        return best_tag(self.pretrained)


_REGISTRY: dict[str, ModelEntry] = {}
def register_model(
    builder: Builder | None = None,
    *,
    name: str | None = None,
    dataset: str,
    defaults: Mapping[str, Any] | None = None,
    paper_error: float | None = None,
    pretrained: Sequence[PretrainedConfig] = (),
    description: str | None = None,
) -> Any:
    """Register a builder under a zoo name; usable as ``@register_model(...)`` or called directly.

    Args:
        builder: a function ``(input_shape=None, classes=..., include_top=True, **kwargs) -> keras.Model``
            following the ``nin_keras.models`` signature.
        name: zoo name; default the builder's ``__name__``.
        dataset: the data set the architecture is laid out for.
        defaults: keyword arguments always passed to the builder (e.g. ``{"batch_norm": True}``).
        paper_error: the paper's test error (%), None if the paper reports none.
        pretrained: published weight sets (the built-in models' come from the weights index);
            the most accurate is the default for ``pretrained=True``.
        description: one line; default the builder docstring's first line.

    Returns:
        The builder, unchanged (decorator form: the decorator).

    Raises:
        ValueError: the name is taken or malformed, or two weight sets share a tag.
    """

    def register(fn: Builder) -> Builder:
        zoo_name = name or fn.__name__
        if not zoo_name.isidentifier():
            raise ValueError(f"Zoo model `name` must be an identifier (no dots), got {zoo_name!r}.")
        if zoo_name in _REGISTRY:
            raise ValueError(f"Zoo model {zoo_name!r} is already registered.")
        tags = [cfg.tag for cfg in pretrained]
        if len(set(tags)) != len(tags):
            raise ValueError(f"Duplicate weight tags for {zoo_name!r}: {tags}.")
        doc = (fn.__doc__ or "").strip().splitlines()
        _REGISTRY[zoo_name] = ModelEntry(
            name=zoo_name,
            builder=fn,
            dataset=dataset,
            defaults=dict(defaults or {}),
            paper_error=paper_error,
            description=description or (doc[0] if doc else zoo_name),
            pretrained={cfg.tag: cfg for cfg in pretrained},
        )
        return fn

    return register(builder) if builder is not None else register


def unregister_model(name: str) -> None:
    """Remove a registered model (for tests and for replacing an entry)."""
    _REGISTRY.pop(name, None)


def _load_builtin() -> None:
    # The built-in entries register themselves on import (they import this module first).
    importlib.import_module("nin_keras.zoo.models")


def list_models(pattern: str | None = None, pretrained: bool | None = None) -> list[str]:
    """Sorted zoo names: architectures, or (``pretrained=True``) weight sets ``name.tag``.

    Args:
        pattern: shell-style pattern (``"nin_cifar*"``) matched against the architecture name;
            without wildcards, a substring.
        pretrained: True lists every published weight set as ``name.tag`` (what
            ``create_model(..., pretrained=True)`` and ``ImageClassifier.from_preset`` accept), False the
            architectures without weights, None every architecture.
    """
    _load_builtin()
    if pattern and not any(ch in pattern for ch in "*?["):
        pattern = f"*{pattern}*"
    names = []
    for entry in _REGISTRY.values():
        if pattern and not fnmatch.fnmatchcase(entry.name, pattern):
            continue
        if pretrained is True:
            names += [entry.preset_name(tag) for tag in entry.pretrained]
        elif pretrained is None or not entry.pretrained:
            names.append(entry.name)
    return sorted(names)


def split_name(name: str) -> tuple[str, str | None]:
    """``"nin_cifar10.caffe"`` -> ``("nin_cifar10", "caffe")``; ``"nin_mnist"`` -> ``("nin_mnist", None)``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"Model `name` must be a non-empty string, got {name!r}.")
    base, _, tag = name.partition(".")
    return base, tag or None


def get_model_entry(name: str) -> ModelEntry:
    """The registry entry of ``name`` (a tag suffix is ignored); unknown names suggest close ones."""
    _load_builtin()
    base, _ = split_name(name)
    if base not in _REGISTRY:
        close = difflib.get_close_matches(base, _REGISTRY, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ArgumentError(f"Unknown zoo model {name!r}.{hint} ",
                            Call("nin_keras.zoo:list_models", pretrained=True),
                            " lists the names with weights.")
    return _REGISTRY[base]


def get_pretrained_config(name: str, pretrained: bool | str = True) -> tuple[ModelEntry, PretrainedConfig]:
    """Resolve ``name`` (optionally ``name.tag``) and ``pretrained`` (True or a tag) to a weight set."""
    entry = get_model_entry(name)
    _, name_tag = split_name(name)
    tag = pretrained if isinstance(pretrained, str) else (name_tag or entry.default_tag)
    if name_tag and isinstance(pretrained, str) and pretrained != name_tag:
        raise ValueError(f"`pretrained`={pretrained!r} contradicts the tag in name {name!r}.")
    if tag is None:
        raise ValueError(
            f"Zoo model {entry.name!r} has no published weights (nothing was trained for it here); "
            f"use pretrained=False. Published weights: {list_models(pretrained=True)}."
        )
    if tag not in entry.pretrained:
        raise ValueError(
            f"Zoo model {entry.name!r} has no weights tagged {tag!r}; tags: {sorted(entry.pretrained) or 'none'}."
        )
    return entry, entry.pretrained[tag]
