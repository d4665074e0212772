"""Training on every Keras backend: recipes, one run builder, checkpoints and metrics.

Example:
    >>> from nin_keras.train import load_recipe, train
    >>> result = train(load_recipe("nin_mnist_fast"), "runs/nin_mnist_fast")   # rerun to resume
    >>> result.test_metrics["error_percent"], result.preset_dir
    >>> from nin_keras.train import finetune
    >>> finetune("nin_cifar10", "my_photos/", "my_preset", epochs=3)   # a folder per class
"""

from nin_keras.train.evaluate import evaluate_model, evaluate_preset
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
    "evaluate_model",
    "evaluate_preset",
    "finetune",
    "list_recipes",
    "load_recipe",
    "make_schedule",
    "make_strategy",
    "train",
    "with_overrides",
]
