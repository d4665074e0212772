"""Real images for the parity check (test split) and int8 calibration (training split).

Images come from the local copy of the model's data set (:func:`nin_keras.data.load_dataset`
with ``source="local"``: an export never downloads) as raw uint8 ``[N, H, W, C]``; a seeded
shuffle over the whole split picks them, so class-ordered sources (image folders) still give a
class-balanced sample. A model with no data set, or none on disk, is checked on seeded random
images, and the parity report says so.
"""

from __future__ import annotations

import functools

import numpy as np

SEED = 1234


def parity_images(dataset: str | None, count: int,
                  input_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray | None, str]:
    """``(uint8 images [count, H, W, C], labels or None, description)`` for the parity check.

    Args:
        dataset: data set name, or ``None`` for seeded random images of ``input_shape``.
        count: number of images.
        input_shape: ``(H, W, C)`` of the model's raw input.
    """
    if count < 1:
        raise ValueError(f"parity_samples must be at least 1, got {count}")
    from nin_keras.data import DATASET_NAMES
    from nin_keras.errors import DataError

    why = "the model has no data set"
    if dataset is not None and dataset not in DATASET_NAMES:
        why = f"{dataset!r} is not a catalogued data set"
    elif dataset is not None:
        try:
            images, labels = _take(dataset, "test", count)
            return images, labels, f"{dataset} test split, {len(images)} images (seeded sample)"
        except DataError:
            why = f"no local copy of {dataset}"
    images = np.random.default_rng(SEED).integers(0, 256, (count, *input_shape), np.uint8)
    return images, None, f"{count} seeded random uint8 images ({why})"


def calibration_images(dataset: str | None, count: int) -> tuple[np.ndarray, str]:
    """``(uint8 images [count, H, W, C], description)`` from the training split for calibration.

    Raises:
        ValueError: no data set is known.
        DataError: the data set has no local copy.
    """
    from nin_keras.data import DATASET_NAMES

    if dataset not in DATASET_NAMES:
        raise ValueError("quantize='int8' needs representative_data or a model trained on a "
                         f"catalogued data set ({', '.join(DATASET_NAMES)}); this one has {dataset!r}")
    if count < 1:
        raise ValueError(f"calibration_samples must be at least 1, got {count}")
    images, _ = _take(dataset, "train", count)
    return images, f"{dataset} train split, {len(images)} images (seeded sample)"


def class_names(dataset: str | None, classes: int) -> list[str]:
    """The data set's class names, or ``"0" .. "classes-1"`` without one."""
    from nin_keras.data import DATASET_NAMES, dataset_info

    if dataset in DATASET_NAMES:
        names = list(dataset_info(dataset).class_names)
        if len(names) == classes:
            return [str(n) for n in names]
    return [str(i) for i in range(classes)]


@functools.lru_cache(maxsize=8)  # exports of several formats/modes reuse one sample
def _take(dataset: str, split: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    from nin_keras.data import load_dataset

    ds = load_dataset(dataset, split, source="local")
    size = int(ds.cardinality())
    buffer = size if size > 0 else 60_000
    ds = ds.shuffle(buffer, seed=SEED, reshuffle_each_iteration=False).take(count)
    images, labels = [], []
    for image, label in ds.as_numpy_iterator():
        images.append(image)
        labels.append(label)
    if not images:
        raise ValueError(f"data set {dataset!r} split {split!r} gave no images")
    images, labels = np.stack(images).astype(np.uint8), np.asarray(labels, np.int64)
    images.flags.writeable = labels.flags.writeable = False  # shared through the cache
    return images, labels
