"""Training recipes as data: ``zoo/recipes/<name>.json``, loaded and checked here.

A recipe names everything a training run depends on, so the same file reproduces a result:

```
{
  "name": "nin_mnist_fast",
  "description": "...",
  "model": {"name": "nin_mnist", "kwargs": {"batch_norm": true}},
  "dataset": {"name": "mnist", "source": "auto"},   # optional "label": how results are named
  "validation": {"holdout": 5000},            # N training images, stratified; or {"holdout": 0}
  "preprocessing": [<keras layer config>, ...],
  "raw_augmentation": [<keras layer config>, ...],  # on raw pixels (float32 in [0, 255]), before
                                                 # preprocessing: RandAugment, colour jitter
  "augmentation": [<keras layer config>, ...],  # after preprocessing: crops, flips, erasing
  "mixing": {"mixup_alpha": 0.8, "cutmix_alpha": 1.0, "prob": 1.0, "switch_prob": 0.5},
                                                 # timm's Mixup on each augmented batch
  "optimizer": {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9, "nesterov": true},
  "weight_decay": {"value": 5e-4, "mode": "l2"},   # or "decoupled"
  "schedule": {"name": "one_cycle", ...},          # see nin_keras.train.schedules
  "loss": {"label_smoothing": 0.1},
  "ema": {"decay": 0.999, "warmup": true},        # optional weight average, published instead
  "epochs": 12, "batch_size": 128, "seed": 1,
  "mixed_precision": false,                      # or true / "mixed_float16", "mixed_bfloat16"
  "checkpoint_every_steps": 100,
  "paper": {"test_error": 0.47, "source": "Lin et al. 2014, Table 4"},
  "license": "BSD-3-Clause"                      # of the trained weights; this is the default
}
```

Training images go: raw augmentation -> preprocessing -> augmentation -> mixing (both engines).
Geometric and colour operations that assume pixel values (``keras.layers.RandAugment``'s
``value_range`` (0, 255)) belong in ``raw_augmentation``; a zero-filling crop or erasing belongs
after the preprocessing, where 0 is the whitened data's mean. ``mixing`` builds
``nin_keras.layers.MixUpCutMix`` (its arguments; ``prob`` 1 and ``switch_prob`` 0.5 by default);
the loss then takes soft targets, label smoothing applying to the mixed ones (smoothing and
mixing commute), and the training accuracy is still counted on the original labels.

Preprocessing and augmentation entries are Keras layer configs as written by
``keras.saving.serialize_keras_object`` (the short form ``{"class_name": "Rescaling",
"config": {...}}`` is accepted too).

The JSON dict is what files, checkpoints and metadata hold (``load_recipe`` returns it, and a
resumed run compares it key by key); a run reads it once through ``Recipe.parse``, which checks
it and gives the training code typed attributes (``recipe.optimizer.learning_rate``,
``recipe.weight_decay.l2``) instead of string keys.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from nin_keras.arguments import check_number

REQUIRED = ("name", "model", "dataset", "optimizer", "schedule", "epochs", "batch_size", "seed")
OPTIONAL = (
    "description",
    "validation",
    "preprocessing",
    "augmentation",
    "raw_augmentation",
    "mixing",
    "weight_decay",
    "loss",
    "ema",
    "mixed_precision",
    "checkpoint_every_steps",
    "paper",
    "notes",
    "license",
)


#: ``mixed_precision`` values and the Keras dtype policy each trains under. ``true`` is float16 (GPUs,
#: with loss scaling); bfloat16 keeps float32's exponent range, so it needs no loss scaling, and
#: runs on CPUs with AMX (oneDNN) and on TPUs.
MIXED_PRECISION_POLICIES = {False: None, True: "mixed_float16", "mixed_float16": "mixed_float16",
                            "mixed_bfloat16": "mixed_bfloat16"}


def mixed_precision_policy(recipe: dict[str, Any]) -> str | None:
    """The Keras dtype policy a recipe trains under (``None``: float32)."""
    return MIXED_PRECISION_POLICIES[recipe.get("mixed_precision", False)]


def recipes_dir() -> Path:
    """The folder holding the zoo's recipe files (``zoo/recipes``)."""
    return Path(str(resources.files("nin_keras.zoo") / "recipes"))


def list_recipes() -> list[str]:
    """Names of the zoo's recipes, sorted."""
    return sorted(p.stem for p in recipes_dir().glob("*.json"))


def load_recipe(name_or_path: str | os.PathLike) -> dict[str, Any]:
    """Read a recipe by zoo name (``"nin_mnist_fast"``) or from a ``.json`` path, and check it.

    Raises:
        FileNotFoundError: unknown name (the message suggests close names) or missing file.
        ValueError: the recipe misses a required key, has an unknown key or a bad value.
    """
    path = Path(name_or_path)
    if path.suffix != ".json":
        path = recipes_dir() / f"{name_or_path}.json"
        if not path.exists():
            close = difflib.get_close_matches(str(name_or_path), list_recipes(), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(list_recipes())}"
            raise FileNotFoundError(f"no recipe named {str(name_or_path)!r}{hint}")
    try:
        recipe = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"recipe {path} is not valid JSON: {e}") from None
    validate_recipe(recipe, source=str(path))
    return recipe


def validate_recipe(recipe: dict[str, Any], source: str = "recipe") -> None:
    """Raise ``ValueError`` naming the key when ``recipe`` is incomplete or malformed."""
    missing = [k for k in REQUIRED if k not in recipe]
    if missing:
        raise ValueError(f"{source}: missing key(s) {missing}")
    unknown = sorted(set(recipe) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {unknown}; allowed: {sorted(REQUIRED + OPTIONAL)}")
    for key in ("epochs", "batch_size"):
        if not isinstance(recipe[key], int) or recipe[key] < 1:
            raise ValueError(f"{source}: {key!r} must be a positive integer, got {recipe[key]!r}")
    if "name" not in recipe["model"] or "name" not in recipe["dataset"]:
        raise ValueError(f"{source}: 'model' and 'dataset' need a 'name'")
    if "learning_rate" not in recipe["optimizer"]:
        raise ValueError(f"{source}: 'optimizer' needs a 'learning_rate'")
    mixed = recipe.get("mixed_precision", False)
    if not isinstance(mixed, (bool, str)) or mixed not in MIXED_PRECISION_POLICIES:
        raise ValueError(f"{source}: 'mixed_precision' must be one of {list(MIXED_PRECISION_POLICIES)}, "
                         f"got {recipe['mixed_precision']!r}")
    ema = recipe.get("ema")
    if ema is not None and (not isinstance(ema, dict) or set(ema) - {"decay", "warmup"}
                            or not isinstance(ema.get("decay"), (int, float)) or not 0 < ema["decay"] < 1):
        raise ValueError(f"{source}: 'ema' must be {{'decay': d in (0, 1), 'warmup': bool}}, got {ema!r}")
    MixingSpec.parse(recipe.get("mixing"), source)
    mode = recipe.get("weight_decay", {}).get("mode", "l2")
    if mode not in ("l2", "decoupled"):
        raise ValueError(f"{source}: weight_decay mode must be 'l2' or 'decoupled', got {mode!r}")


def with_overrides(recipe: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """A copy of ``recipe`` with top-level keys replaced (``None`` values are ignored)."""
    out = copy.deepcopy(recipe)
    out.update({k: v for k, v in overrides.items() if v is not None})
    validate_recipe(out)
    return out


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """The network: a zoo architecture name and its keyword arguments."""

    name: str
    kwargs: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    """A Keras optimizer by name; ``config`` is the recipe block (``name`` included)."""

    name: str
    learning_rate: float
    config: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class WeightDecay:
    """``mode`` "l2" (Caffe's: ``0.5 * value * sum(kernel**2)`` in the loss) or "decoupled"."""

    value: float = 0.0
    mode: str = "l2"

    @property
    def l2(self) -> float:
        """The loss-side coefficient (0 for decoupled decay, which the optimizer applies)."""
        return self.value if self.mode == "l2" else 0.0

    @property
    def decoupled(self) -> float:
        """The optimizer-side coefficient (0 for Caffe-style L2)."""
        return self.value if self.mode == "decoupled" else 0.0


@dataclasses.dataclass(frozen=True)
class EmaSpec:
    """A weight average (``nin_keras.train.ema.WeightAverage``)."""

    decay: float
    warmup: bool = True


@dataclasses.dataclass(frozen=True)
class MixingSpec:
    """MixUp / CutMix (``nin_keras.layers.MixUpCutMix``'s arguments, checked here by name)."""

    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    prob: float = 1.0
    switch_prob: float = 0.5

    @classmethod
    def parse(cls, block: Any, source: str = "recipe") -> "MixingSpec | None":
        """The recipe's ``mixing`` block typed, ``None`` when absent.

        Raises:
            ValueError: an unknown key, an alpha < 0 or a probability outside [0, 1], named.
        """
        if block is None:
            return None
        fields = [f.name for f in dataclasses.fields(cls)]
        if not isinstance(block, dict) or set(block) - set(fields):
            raise ValueError(f"{source}: 'mixing' must be a dict of {fields}, got {block!r}")
        values = {}
        for name in fields:
            if name in block:
                alpha = name.endswith("alpha")
                values[name] = check_number(block[name], f"{source}: 'mixing.{name}'", 0, None if alpha else 1)
        return cls(**values)

    def layer_config(self) -> dict[str, Any]:
        """The ``MixUpCutMix`` layer config (a recipe-style Keras layer config)."""
        return {"module": "nin_keras.layers", "class_name": "MixUpCutMix", "config": dataclasses.asdict(self),
                "registered_name": "nin_keras>MixUpCutMix"}


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A recipe checked once and read through attributes (see the module docstring).

    Build it with ``Recipe.parse(dict)``; ``to_dict()`` gives back the JSON form it came from.
    """

    name: str
    model: ModelSpec
    dataset: dict[str, Any]
    validation: dict[str, Any]
    preprocessing: tuple[dict[str, Any], ...]
    augmentation: tuple[dict[str, Any], ...]
    raw_augmentation: tuple[dict[str, Any], ...]
    mixing: MixingSpec | None
    optimizer: OptimizerSpec
    weight_decay: WeightDecay
    schedule: dict[str, Any]
    label_smoothing: float
    ema: EmaSpec | None
    epochs: int
    batch_size: int
    seed: int
    policy: str | None
    checkpoint_every_steps: int
    paper_error: float | None
    license: str | None
    source: dict[str, Any] = dataclasses.field(repr=False, compare=False)

    @classmethod
    def parse(cls, recipe: "Recipe | Mapping[str, Any]", source: str = "recipe") -> "Recipe":
        """Check a recipe dict (``validate_recipe``) and type it; a ``Recipe`` is returned as is.

        Raises:
            ValueError: a missing, unknown or malformed key, named.
        """
        if isinstance(recipe, Recipe):
            return recipe
        data = copy.deepcopy(dict(recipe))
        validate_recipe(data, source)
        if not isinstance(data["seed"], int) or isinstance(data["seed"], bool) or data["seed"] < 0:
            raise ValueError(f"{source}: 'seed' must be an integer >= 0, got {data['seed']!r}")
        every = data.get("checkpoint_every_steps", 200)
        if not isinstance(every, int) or isinstance(every, bool) or every < 0:
            raise ValueError(f"{source}: 'checkpoint_every_steps' must be an integer >= 0 (0: only at epoch ends), "
                             f"got {every!r}")
        optimizer = data["optimizer"]
        decay = data.get("weight_decay") or {}
        ema = data.get("ema")
        return cls(
            name=data["name"],
            model=ModelSpec(data["model"]["name"], dict(data["model"].get("kwargs", {}))),
            dataset=data["dataset"],
            validation=dict(data.get("validation") or {}),
            preprocessing=tuple(data.get("preprocessing", [])),
            augmentation=tuple(data.get("augmentation", [])),
            raw_augmentation=tuple(data.get("raw_augmentation", [])),
            mixing=MixingSpec.parse(data.get("mixing"), source),
            optimizer=OptimizerSpec(optimizer["name"], float(optimizer["learning_rate"]), dict(optimizer)),
            weight_decay=WeightDecay(float(decay.get("value", 0.0)), decay.get("mode", "l2")),
            schedule=dict(data["schedule"]),
            label_smoothing=float((data.get("loss") or {}).get("label_smoothing", 0.0)),
            ema=None if not ema else EmaSpec(float(ema["decay"]), bool(ema.get("warmup", True))),
            epochs=data["epochs"],
            batch_size=data["batch_size"],
            seed=data["seed"],
            policy=mixed_precision_policy(data),
            checkpoint_every_steps=every,
            paper_error=(data.get("paper") or {}).get("test_error"),
            license=data.get("license"),
            source=data,
        )

    def to_dict(self) -> dict[str, Any]:
        """The recipe's JSON form (a copy): what checkpoints, metrics and presets record."""
        return copy.deepcopy(self.source)

    def replace(self, **keys: Any) -> "Recipe":
        """A recipe with top-level JSON keys replaced (checked again)."""
        return Recipe.parse({**self.to_dict(), **keys})
