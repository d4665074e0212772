"""Accuracy and loss of an inference model (raw uint8 images in) on a data set split.

Training's final test numbers and ``nin-keras eval`` both come from ``evaluate_model`` on the
preset's inference model, so a published number is measured exactly the way a user re-measures it.

Test-time augmentation (``tta``) averages the class probabilities of several views of each raw
image; a published number is always the plain single-view one, and a TTA figure is reported
beside it, never instead of it. Exported artifacts stay single-pass.
"""

from __future__ import annotations

import os
from typing import Any

import keras
import numpy as np

from nin_keras.arguments import check_count
from nin_keras.data.arrays import load_arrays


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


def evaluate_model(model: keras.Model, images: np.ndarray, labels: np.ndarray, batch_size: int = 500,
                   tta: str = "none") -> dict[str, Any]:
    """Top-1 accuracy, error (%) and mean cross-entropy of a probability-output model.

    Args:
        model: maps raw images (as stored in the data set) to class probabilities.
        images: ``(N, H, W, C)`` array.
        labels: ``(N,)`` integer labels.
        batch_size: images per forward pass.
        tta: test-time augmentation, one of ``TTA_MODES`` (see ``tta_views``).

    Returns:
        ``{"accuracy", "error_percent", "loss", "examples", "tta"}``: ``accuracy`` a fraction
        (as Keras reports it), ``error_percent`` in percent; ``preset_metrics`` turns it into a
        preset's percentages.
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
    accuracy = float(np.mean(np.argmax(probabilities, axis=-1) == labels))
    picked = np.clip(probabilities[np.arange(len(labels)), labels], 1e-7, 1.0)
    return {
        "accuracy": accuracy,
        "error_percent": 100.0 * (1.0 - accuracy),
        "loss": float(-np.mean(np.log(picked))),
        "examples": int(len(labels)),
        "tta": tta,
    }


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


def evaluate_preset(
    preset: str | os.PathLike,
    dataset: str | os.PathLike | None = None,
    split: str = "test",
    data_dir: str | os.PathLike | None = None,
    source: str = "auto",
    limit: int | None = None,
    batch_size: int = 500,
    tta: str = "none",
    workers: int | None = None,
) -> dict[str, Any]:
    """Evaluate a preset (zoo name, folder or URL) on a data set split with its own preprocessing.

    Args:
        preset: anything ``nin_keras.zoo.load_preset`` accepts.
        dataset: a catalogued data set name, or the path of a class-folder directory or
            ``.tar.gz``/``.zip`` archive (``[<split>/]<class>/<image>``: see
            ``nin_keras.data.image_folder``), whose images of any size go through the preset's
            input policy and whose folder names must be among the preset's class names. Default:
            the data set the preset was trained on.
        split: split name; a folder without split folders is evaluated whole.
        data_dir, source: passed to ``nin_keras.data.load_dataset``.
        limit: evaluate the first ``limit`` examples only.
        batch_size: images per forward pass.
        tta: test-time augmentation (``tta_views``); the preset's published figure is single-view.
        workers: processes decoding a folder's images (``nin_keras.data.decode_pool``; the same
            arrays for any number): default one per usable CPU, up to ``MAX_DEFAULT_WORKERS``.

    Returns:
        ``evaluate_model``'s dict plus ``preset``, ``dataset``, ``split``, ``paper_error`` (the
        paper's test error in %) and ``published`` (the preset's own recorded metrics), both None
        unless ``dataset`` is the preset's own data set;
        for a folder also ``class_names`` and ``input_policy``.

    Raises:
        ValueError: ``dataset`` is neither a catalogued name nor an existing path.
        DataError: the folder's classes are not the preset's (both lists named), or its images
            cannot be read.

    Example:
        >>> evaluate_preset("runs/pets/preset", "pets.zip")["accuracy"]
    """
    from nin_keras.data import DATASET_NAMES
    from nin_keras.zoo import load_preset

    if limit is not None:
        check_count(limit, "limit")
    check_count(batch_size, "batch_size")
    check_count(workers, "workers", optional=True)
    loaded = load_preset(preset)
    dataset = dataset or loaded.metadata["dataset"]
    extra: dict[str, Any] = {}
    if os.path.exists(dataset):
        images, labels, split, extra = _folder_split(loaded, dataset, split, workers)
        images, labels = images[:limit], labels[:limit]
    elif dataset in DATASET_NAMES:
        block = {"name": dataset, "source": source, f"{split}_examples": limit}
        images, labels = load_arrays(block, split, data_dir)
    else:
        trained_on = loaded.metadata.get("data_source")
        hint = f"; this preset was fine-tuned on {trained_on}" if trained_on else ""
        raise ValueError(f"dataset {str(dataset)!r} is neither a data set name ({', '.join(DATASET_NAMES)}) "
                         f"nor an existing class-folder directory or archive{hint}")
    result = evaluate_model(loaded.inference_model(), images, labels, batch_size, tta)
    # The paper's and the published figures are about the preset's own data set, not a user's folder.
    own = not extra and dataset == loaded.metadata.get("dataset")
    result.update(
        preset=str(preset),
        dataset=str(dataset),
        split=split,
        paper_error=loaded.metadata.get("paper_error") if own else None,
        published=loaded.metadata.get("metrics") if own else None,
        **extra,
    )
    return result


def _folder_split(preset, root: str | os.PathLike, split: str, workers: int | None):
    """``(images, labels, split, extra)`` of a class-folder set, labelled by the preset's class names."""
    from nin_keras.data.image_folder import read_labelled_images
    from nin_keras.errors import DataError

    if not preset.class_names:
        raise DataError(f"preset {preset.path} records no class names to match the folders of {root} against")
    policy = preset.input_policy
    found = read_labelled_images(root, tuple(preset.class_names), policy, workers=workers)
    if found.has_splits:
        if split not in found.splits:
            raise DataError(f"{root}: no split folder {split!r} (found {', '.join(sorted(found.splits))})")
    else:
        split = "all"  # no split folders: every image is evaluated
    images, labels = found.splits[split] if found.has_splits else found.splits["train"]
    return images, labels, split, {"class_names": list(found.class_names), "input_policy": policy.to_dict()}


def _compiled_call(model: keras.Model):
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.function(lambda x: model(x, training=False))
    return model.predict_on_batch
