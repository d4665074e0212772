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
  "augmentation": [<keras layer config>, ...],
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

Preprocessing and augmentation entries are Keras layer configs as written by
``keras.saving.serialize_keras_object`` (the short form ``{"class_name": "Rescaling",
"config": {...}}`` is accepted too).
"""

from __future__ import annotations

import copy
import difflib
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

REQUIRED = ("name", "model", "dataset", "optimizer", "schedule", "epochs", "batch_size", "seed")
OPTIONAL = (
    "description",
    "validation",
    "preprocessing",
    "augmentation",
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
    mode = recipe.get("weight_decay", {}).get("mode", "l2")
    if mode not in ("l2", "decoupled"):
        raise ValueError(f"{source}: weight_decay mode must be 'l2' or 'decoupled', got {mode!r}")


def with_overrides(recipe: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """A copy of ``recipe`` with top-level keys replaced (``None`` values are ignored)."""
    out = copy.deepcopy(recipe)
    out.update({k: v for k, v in overrides.items() if v is not None})
    validate_recipe(out)
    return out
