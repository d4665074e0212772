"""Whole data set splits in memory as NumPy arrays, and fitting preprocessing layers on them."""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import keras
import numpy as np

from nin_keras.data.sources import load_split
from nin_keras.errors import DataError


def load_arrays(dataset: Mapping[str, Any], split: str, data_dir: str | os.PathLike | None = None):
    """Read a whole split into memory as ``(uint8 images NHWC, int64 labels)``.

    Holding MNIST or CIFAR in memory (≤ 185 MB) lets every epoch draw an exact, seeded
    permutation, which is what makes a resumed run see the same batches as an uninterrupted one.

    Args:
        dataset: the recipe's ``dataset`` block: ``name``, optional ``source`` and optional
            ``train_examples`` / ``test_examples`` (keep only N examples, for quick runs: the
            first N, or with ``subset_seed`` N drawn at random with that seed, which a data set
            stored class by class, such as the CIFAR-10 JPEG copy, needs: first N lacking one of
            the split's classes raise ``DataError``).
        split: ``"train"`` or ``"test"``.
        data_dir: local data folder (see ``nin_keras.data.load_dataset``).
    """
    images, labels = load_split(dataset["name"], split, source=dataset.get("source", "auto"), data_dir=data_dir)
    images, labels = images.astype(np.uint8), labels.astype(np.int64)
    limit = dataset.get(f"{split}_examples")
    seed = dataset.get("subset_seed")
    if limit and seed is None:
        kept = labels[: int(limit)]
        # A set stored class by class (the CIFAR-10 JPEG copy) would give a run on one class that
        # trains and evaluates without a word: first N that lack a class and hold each of theirs in
        # one run (a shuffled set's first 30 may lack a class too, but not in runs) are refused.
        missing = len(np.unique(labels)) - len(np.unique(kept))
        runs = 1 + int(np.count_nonzero(kept[1:] != kept[:-1]))
        if missing and runs == len(np.unique(kept)):
            raise DataError(
                f"the first {int(limit)} images of {dataset['name']}'s {split} split lack {missing} of its "
                f"{len(np.unique(labels))} classes (the set is stored class by class); add a subset_seed to "
                f"the dataset block to draw {int(limit)} at random")
        images, labels = images[: int(limit)], kept
    if limit and seed is not None:
        keep = np.sort(np.random.default_rng(int(seed)).permutation(len(labels))[: int(limit)])
        images, labels = images[keep], labels[keep]
    return images, labels


def fit_preprocessing(layers: Sequence[keras.layers.Layer], images: np.ndarray, chunk: int = 2048) -> None:
    """Fit every layer that has ``adapt`` (e.g. ``ZCAWhitening``) on ``images`` passed through the
    layers before it, ``chunk`` images at a time (``keras.ops``: any backend, no ``tf.data``)."""
    for i, layer in enumerate(layers):
        if hasattr(layer, "adapt"):
            upstream = _Upstream(images, layers[:i], chunk)
            # Keras's own adapt layers (Normalization) take an iterable only where TensorFlow is
            # installed (they test for tf.data.Dataset first), so they get the whole input as one array.
            streams = type(layer).__module__.startswith("nin_keras.")
            layer.adapt(upstream if streams else np.concatenate(list(upstream.as_numpy_iterator())))


class _Upstream:
    """Batches of images through some layers, in the ``as_numpy_iterator`` form ``adapt`` reads."""

    def __init__(self, images: np.ndarray, layers: Sequence[keras.layers.Layer], chunk: int):
        self.images, self.layers, self.chunk = images, layers, chunk

    def as_numpy_iterator(self):
        for start in range(0, len(self.images), self.chunk):
            x = keras.ops.cast(self.images[start:start + self.chunk], "float32")
            for layer in self.layers:
                x = layer(x)
            yield keras.ops.convert_to_numpy(x)
