"""Accuracy and loss of an inference model (raw uint8 images in) on a data set split.

Training's final test numbers and ``nin-keras eval`` both come from ``evaluate_model`` on the
preset's inference model, so a published number is measured exactly the way a user re-measures it.
"""

from __future__ import annotations

import os
from typing import Any

import keras
import numpy as np
from nin_keras.tensorflow_only import import_tensorflow

tf = import_tensorflow(__name__)

from nin_keras.data.arrays import load_arrays


def predict_probabilities(model: keras.Model, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Class probabilities for ``images`` in batches (a plain ``tf.function`` call, which works
    under any distribution strategy the model was built in, unlike ``model.predict``)."""
    call = tf.function(lambda x: model(x, training=False))
    return np.concatenate(
        [np.asarray(call(images[i : i + batch_size]), dtype=np.float64) for i in range(0, len(images), batch_size)]
    )


def evaluate_model(model: keras.Model, images: np.ndarray, labels: np.ndarray, batch_size: int = 500) -> dict[str, Any]:
    """Top-1 accuracy, error (%) and mean cross-entropy of a probability-output model.

    Args:
        model: maps raw images (as stored in the data set) to class probabilities.
        images: ``(N, H, W, C)`` array.
        labels: ``(N,)`` integer labels.
        batch_size: images per forward pass.

    Returns:
        ``{"accuracy", "error_percent", "loss", "examples"}``.
    """
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"images and labels must be non-empty and of equal length, got {len(images)} and {len(labels)}")
    images = _checked_images(images, model)
    probabilities = predict_probabilities(model, images, batch_size)
    labels = np.asarray(labels, dtype=np.int64)
    accuracy = float(np.mean(np.argmax(probabilities, axis=-1) == labels))
    picked = np.clip(probabilities[np.arange(len(labels)), labels], 1e-7, 1.0)
    return {
        "accuracy": accuracy,
        "error_percent": 100.0 * (1.0 - accuracy),
        "loss": float(-np.mean(np.log(picked))),
        "examples": int(len(labels)),
    }


def _checked_images(images: np.ndarray, model: keras.Model) -> np.ndarray:
    """``images`` as an array the model takes, or a ValueError naming what is wrong with them.

    NaN pixels would otherwise give NaN probabilities whose argmax (class 0) can count as correct.
    """
    images = np.asarray(images)
    if images.dtype == bool or images.dtype.kind not in "uif":
        raise ValueError(f"`images` must be a uint8 or float array, got dtype {images.dtype}")
    expected = tuple(model.input_shape[1:])
    if images.ndim != len(expected) + 1 or any(e not in (None, d) for e, d in zip(expected, images.shape[1:])):
        raise ValueError(f"`images` must have shape (N, {', '.join(map(str, expected))}), got {images.shape}")
    if images.dtype.kind == "f" and not np.isfinite(images).all():
        raise ValueError("`images` contain NaN or infinite values")
    return images


def evaluate_preset(
    preset: str | os.PathLike,
    dataset: str | None = None,
    split: str = "test",
    data_dir: str | os.PathLike | None = None,
    source: str = "auto",
    limit: int | None = None,
    batch_size: int = 500,
) -> dict[str, Any]:
    """Evaluate a preset (zoo name, folder or URL) on a data set split with its own preprocessing.

    Args:
        preset: anything ``nin_keras.zoo.load_preset`` accepts.
        dataset: data set name; default the one the preset was trained on.
        split: split name.
        data_dir, source: passed to ``nin_keras.data.load_dataset``.
        limit: evaluate the first ``limit`` examples only.
        batch_size: images per forward pass.

    Returns:
        ``evaluate_model``'s dict plus ``preset``, ``dataset``, ``split``, ``paper_error`` (the
        paper's test error in %, or None) and ``published`` (the preset's own recorded metrics).
    """
    from nin_keras.zoo import load_preset

    loaded = load_preset(preset)
    dataset = dataset or loaded.metadata["dataset"]
    block = {"name": dataset, "source": source, f"{split}_examples": limit}
    images, labels = load_arrays(block, split, data_dir)
    result = evaluate_model(loaded.inference_model(), images, labels, batch_size)
    result.update(
        preset=str(preset),
        dataset=dataset,
        split=split,
        paper_error=loaded.metadata.get("paper_error"),
        published=loaded.metadata.get("metrics"),
    )
    return result
