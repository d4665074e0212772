"""Training on every Keras backend: recipes, one run builder, checkpoints and metrics.

Example:
    >>> from nin_keras.train import load_recipe, train
    >>> result = train(load_recipe("nin_mnist_fast"), "runs/nin_mnist_fast")   # rerun to resume
    >>> result.test_metrics["error_percent"], result.preset_dir
    >>> from nin_keras.train import finetune
    >>> finetune("nin_cifar10", "my_photos/", "my_preset", epochs=3)   # a folder per class
"""

import warnings
from typing import Any

from nin_keras.train.evaluate import evaluate_preset
from nin_keras.train.finetune import FinetuneResult, finetune
from nin_keras.train.recipes import Recipe, list_recipes, load_recipe, with_overrides
from nin_keras.train.run import TrainResult, train
from nin_keras.train.schedules import (
    CosineSchedule,
    OneCycleSchedule,
    PlateauSchedule,
    Schedule,
    make_schedule,
)
from nin_keras.train.strategy import make_strategy

__all__ = [
    "CosineSchedule",
    "FinetuneResult",
    "OneCycleSchedule",
    "PlateauSchedule",
    "Recipe",
    "Schedule",
    "TrainResult",
    "evaluate_preset",
    "finetune",
    "list_recipes",
    "load_recipe",
    "make_schedule",
    "make_strategy",
    "train",
    "with_overrides",
]


def __getattr__(name: str) -> Any:
    if name == "evaluate_model":  # moved below the zoo, which measures with it too (issue 30)
        warnings.warn("nin_keras.train.evaluate_model is deprecated; import it from nin_keras.evaluation.",
                      DeprecationWarning, stacklevel=2)
        from nin_keras.evaluation import evaluate_model

        return evaluate_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
