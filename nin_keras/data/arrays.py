"""Whole data set splits in memory as NumPy arrays, and fitting preprocessing layers on them."""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import keras
import numpy as np
from nin_keras.tensorflow_only import import_tensorflow

tf = import_tensorflow(__name__)


def load_arrays(dataset: Mapping[str, Any], split: str, data_dir: str | os.PathLike | None = None):
    """Read a whole split into memory as ``(uint8 images NHWC, int64 labels)``.

    Holding MNIST or CIFAR in memory (≤ 185 MB) lets every epoch draw an exact, seeded
    permutation, which is what makes a resumed run see the same batches as an uninterrupted one.

    Args:
        dataset: the recipe's ``dataset`` block: ``name``, optional ``source`` and optional
            ``train_examples`` / ``test_examples`` (keep only the first N, for quick runs).
        split: ``"train"`` or ``"test"``.
        data_dir: local data folder (see ``nin_keras.data.load_dataset``).
    """
    from nin_keras.data import load_dataset

    ds = load_dataset(dataset["name"], split, source=dataset.get("source", "auto"), data_dir=data_dir)
    limit = dataset.get(f"{split}_examples")
    if limit:
        ds = ds.take(int(limit))
    images, labels = [], []
    for x, y in ds.batch(4096).as_numpy_iterator():
        images.append(x)
        labels.append(y)
    return np.concatenate(images).astype(np.uint8), np.concatenate(labels).astype(np.int64)


def fit_preprocessing(layers: Sequence[keras.layers.Layer], images: np.ndarray, chunk: int = 2048) -> None:
    """Fit every layer that has ``adapt`` (e.g. ``ZCAWhitening``) on ``images`` passed through the layers before it."""
    for i, layer in enumerate(layers):
        if not hasattr(layer, "adapt"):
            continue

        def upstream(batch, before=layers[:i]):
            x = tf.cast(batch, "float32")
            for previous in before:
                x = previous(x)
            return x

        layer.adapt(tf.data.Dataset.from_tensor_slices(images).batch(chunk).map(upstream))
