"""The arrays a run trains and validates on: the recipe's training splits, minus a held-out set.

Whole splits are held in memory (``nin_keras.data.arrays.load_arrays``), so each epoch can draw
an exact, seeded permutation (what makes a resumed run see the same batches).
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np

from nin_keras.data.arrays import load_arrays


def training_arrays(recipe: Mapping[str, Any], data_dir: str | os.PathLike | None = None):
    """``(x_train, y_train, x_val, y_val)`` as the recipe's ``dataset`` and ``validation`` say.

    ``dataset.train_splits`` (default ``["train"]``) are concatenated. ``validation`` is
    ``{"holdout": N}`` (N training images held out, stratified by class and drawn with the
    recipe's seed: ``stratified_holdout``), ``{"split": name}`` (a separate split such as SVHN's
    ``valid``) or empty (no validation).
    """
    dataset = recipe["dataset"]
    parts = [load_arrays(dataset, split, data_dir) for split in dataset.get("train_splits", ["train"])]
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    validation = recipe.get("validation") or {}
    if "split" in validation:
        x_val, y_val = load_arrays(dataset, validation["split"], data_dir)
        return x_train, y_train, x_val, y_val
    holdout = int(validation.get("holdout", 0))
    if not 0 <= holdout < len(x_train):
        raise ValueError(f"validation holdout must be in [0, {len(x_train)}), got {holdout}")
    held = np.zeros(len(y_train), bool)
    held[stratified_holdout(y_train, holdout, int(recipe["seed"]))] = True
    return x_train[~held], y_train[~held], x_train[held], y_train[held]


def stratified_holdout(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Sorted indices of ``count`` examples, each class in proportion to its share of ``labels``
    (largest remainders; ties broken at random), drawn without replacement from ``seed``.

    Not simply the last ``count`` examples: that is the papers' protocol for the publishers'
    shuffled files, but sources listed class by class (the CIFAR-10 JPEG copy's folders) would
    then hold out whole classes and train without them.
    """
    rng = np.random.default_rng([seed, 2])
    classes, sizes = np.unique(labels, return_counts=True)
    quotas = sizes * count / len(labels)
    take = np.floor(quotas).astype(int)
    shuffled = rng.permutation(len(classes))
    largest = shuffled[np.argsort(-(quotas - take)[shuffled], kind="stable")]
    take[largest[: count - take.sum()]] += 1
    chosen = [rng.choice(np.flatnonzero(labels == c), k, replace=False) for c, k in zip(classes, take)]
    return np.sort(np.concatenate(chosen))
