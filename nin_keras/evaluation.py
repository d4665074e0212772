"""Accuracy and loss of an inference model (raw images in, class probabilities out) on arrays.

Training's final test numbers, ``nin-keras eval``, fine-tuning, publishing and the compact presets
all come from ``evaluate_model`` on the preset's inference model, so a published number is
measured exactly the way a user re-measures it. Below the zoo and training (it needs only Keras
and NumPy), so that both measure through it.

Test-time augmentation (``tta``) averages the class probabilities of several views of each raw
image; a published number is always the plain single-view one, and a TTA figure is reported
beside it, never instead of it. Exported artifacts stay single-pass.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from nin_keras.arguments import check_count


TTA_MODES = ("none", "flip", "flip_translate")
TTA_SHIFT = 2


def translate(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``images`` moved ``dy`` pixels down and ``dx`` right; the uncovered border is a mirror
    image of the edge (reflect padding), so no black bars appear."""
    pad = max(abs(dy), abs(dx))
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    height, width = images.shape[1:3]
    return padded[:, pad - dy: pad - dy + height, pad - dx: pad - dx + width]


def tta_views(images: np.ndarray, tta: str = "none") -> list[tuple[float, np.ndarray]]:
    """``(weight, view)`` pairs whose weighted mean of probabilities is the TTA prediction.

    - ``"none"``: the image itself.
    - ``"flip"``: the image and its horizontal mirror, 1/2 each.
    - ``"flip_translate"``: each of those at its place (weight 1/4) and moved by
      ``TTA_SHIFT`` = 2 pixels diagonally either way (1/8 each), as airbench weighs them.
    """
    if tta not in TTA_MODES:
        raise ValueError(f"tta must be one of {TTA_MODES}, got {tta!r}")
    if tta == "none":
        return [(1.0, images)]
    mirrored = images[:, :, ::-1]
    if tta == "flip":
        return [(0.5, images), (0.5, mirrored)]
    views = []
    for view in (images, mirrored):
        views += [(0.25, view), (0.125, translate(view, TTA_SHIFT, TTA_SHIFT)),
                  (0.125, translate(view, -TTA_SHIFT, -TTA_SHIFT))]
    return views


def predict_probabilities(model: keras.Model, images: np.ndarray, batch_size: int = 500, tta: str = "none") -> np.ndarray:
    """Class probabilities for ``images`` in batches, averaged over the ``tta`` views
    (``tta_views``) of each image. On TensorFlow a plain ``tf.function`` call (which works under
    any distribution strategy the model was built in, unlike ``model.predict``); on other backends
    ``predict_on_batch`` (compiled once)."""
    call = _compiled_call(model)
    views = tta_views(images, tta)
    total = 0.0
    for weight, view in views:
        total = total + weight * np.concatenate(
            [np.asarray(call(view[i : i + batch_size]), dtype=np.float64) for i in range(0, len(view), batch_size)]
        )
    return total


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts of each (true class, predicted class) pair.

    Args:
        labels: ``(N,)`` true classes.
        predictions: ``(N,)`` predicted classes.
        num_classes: the number of classes.

    Returns:
        ``(num_classes, num_classes)`` int64 array: row ``i``, column ``j`` is the number of images
        of class ``i`` predicted as class ``j`` (the diagonal holds the correct ones).

    Example:
        >>> confusion_matrix(np.array([0, 1, 1]), np.array([0, 0, 1]), 2).tolist()
        [[1, 0], [1, 1]]
    """
    labels, predictions = np.asarray(labels, np.int64), np.asarray(predictions, np.int64)
    for name, classes in (("labels", labels), ("predictions", predictions)):
        outside = (classes < 0) | (classes >= num_classes)
        if outside.any():
            raise ValueError(f"{name} must be class indices in [0, {num_classes}), got {classes[outside][0]}")
    if labels.shape != predictions.shape:
        raise ValueError(f"labels and predictions must have one class each per image, got shapes "
                         f"{labels.shape} and {predictions.shape}")
    counts = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(counts, (labels, predictions), 1)
    return counts


def evaluate_model(model: keras.Model, images: np.ndarray, labels: np.ndarray, batch_size: int = 500,
                   tta: str = "none", per_class: bool = False) -> dict[str, Any]:
    """Top-1 accuracy, error (%) and mean cross-entropy of a probability-output model.

    Args:
        model: maps raw images (as stored in the data set) to class probabilities.
        images: ``(N, H, W, C)`` array.
        labels: ``(N,)`` integer labels.
        batch_size: images per forward pass.
        tta: test-time augmentation, one of ``TTA_MODES`` (see ``tta_views``).
        per_class: also return the ``confusion`` matrix (``confusion_matrix``, as nested lists),
            from which each class's accuracy and its most frequent mistakes follow.

    Returns:
        ``{"accuracy", "error_percent", "loss", "examples", "tta"}``: ``accuracy`` a fraction
        (as Keras reports it), ``error_percent`` in percent; ``preset_metrics`` turns it into a
        preset's percentages. With ``per_class``, ``"confusion"`` too.
    """
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"images and labels must be non-empty and of equal length, got {len(images)} and {len(labels)}")
    check_count(batch_size, "batch_size")
    images = _checked_images(images, model)
    probabilities = predict_probabilities(model, images, batch_size, tta)
    broken = int(np.sum(~np.isfinite(probabilities).all(axis=-1)))
    if broken:
        # argmax of NaN is class 0 and a clipped log gives a plausible loss: figures nobody measured.
        raise ValueError(f"the model gives NaN or infinite probabilities for {broken} of {len(images)} images; "
                         "no accuracy or loss is reported for it")
    labels = np.asarray(labels, dtype=np.int64)
    # Checked before the loss indexes the probabilities with them (a label past the last class).
    confusion = confusion_matrix(labels, np.argmax(probabilities, axis=-1), probabilities.shape[-1])
    accuracy = float(np.trace(confusion) / len(labels))
    picked = np.clip(probabilities[np.arange(len(labels)), labels], 1e-7, 1.0)
    result = {
        "accuracy": accuracy,
        "error_percent": 100.0 * (1.0 - accuracy),
        "loss": float(-np.mean(np.log(picked))),
        "examples": int(len(labels)),
        "tta": tta,
    }
    if per_class:
        result["confusion"] = confusion.tolist()
    return result


def preset_metrics(result: dict[str, Any]) -> dict[str, float | int]:
    """``evaluate_model``'s result as a preset's ``metrics``: percentages, as the papers and the
    parity reports give them (``evaluate_model``'s ``accuracy`` is a fraction, like Keras's)."""
    return {"test_error": round(result["error_percent"], 4), "test_accuracy": round(100 * result["accuracy"], 4),
            "test_loss": round(result["loss"], 6), "test_examples": result["examples"]}


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


def _compiled_call(model: keras.Model):
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.function(lambda x: model(x, training=False))
    return model.predict_on_batch
