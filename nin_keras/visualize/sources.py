"""Where the pictures' model and images come from: a preset or ``.keras`` file; image files or a data set."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Sequence

import keras
import numpy as np

from nin_keras.data.input_policy import InputPolicy, policy_from_metadata
from nin_keras.errors import DataError


@dataclasses.dataclass
class VisualizedModel:
    """A model ready to visualize: raw ``[0, 255]`` images in (preprocessing included).

    Attributes:
        model: the inference model (or a ``.keras`` model as saved).
        class_names: class names in label order, when known.
        dataset: the data set it was trained on, when known.
        input_policy: how image files become its input (the preset's, or the default for its
            input shape; None when the input is not a fixed-size image).
    """

    model: keras.Model
    class_names: list[str] | None = None
    dataset: str | None = None
    input_policy: InputPolicy | None = None


def load_model(spec: str | os.PathLike) -> VisualizedModel:
    """Load a ``.keras`` file, or a preset (zoo name, folder or URL) as its inference model.

    Raises:
        PresetError, DownloadError, ValueError: as ``ImageClassifier.from_preset``.
    """
    if str(spec).endswith(".keras"):
        import nin_keras.layers  # noqa: F401  (registers the custom layers for deserialization)

        if not Path(spec).is_file():
            raise DataError(f"model file {spec} does not exist")
        model = keras.saving.load_model(spec, compile=False)
        return VisualizedModel(model, input_policy=policy_from_metadata({}, model.input_shape[1:]))
    from nin_keras.zoo.classifier import ImageClassifier

    classifier = ImageClassifier.from_preset(spec)
    return VisualizedModel(classifier, classifier.class_names, classifier.metadata.get("dataset"),
                           classifier.input_policy)


def read_images(paths: Sequence[str | os.PathLike], policy: InputPolicy | None) -> np.ndarray:
    """Read image files through the model's input ``policy`` as a float32 batch of raw
    ``[0, 255]`` pixels; the pictures show these inputs, so the maps line up with them.

    Raises:
        DataError: no policy (the model's input is not a fixed-size image), or a file that is
            missing, not an image, or (strict policy) not of the input size.
    """
    if policy is None:
        raise DataError("image files need a model whose input is a fixed-size 1- or 3-channel image")
    return np.stack([policy(path) for path in paths]).astype("float32")


def dataset_images(
    name: str, split: str, count: int, data_dir: str | os.PathLike | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` images drawn at random (seeded, without repeats) from a data set split.

    Returns:
        ``(images float32 (count, H, W, C) raw pixels, labels int64 (count,))``, in split order.
    """
    from nin_keras.data.arrays import load_arrays

    images, labels = load_arrays({"name": name}, split, data_dir)
    if not 1 <= count <= len(images):
        raise ValueError(f"count={count}: must be between 1 and the split's size ({len(images)})")
    chosen = np.sort(np.random.default_rng(seed).choice(len(images), count, replace=False))
    return images[chosen].astype("float32"), labels[chosen]
