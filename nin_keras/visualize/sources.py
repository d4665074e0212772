"""Where the pictures' model and images come from: a preset or ``.keras`` file; image files or a data set."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Sequence

import keras
import numpy as np

from nin_keras.errors import DataError


@dataclasses.dataclass
class VisualizedModel:
    """A model ready to visualize: raw ``[0, 255]`` images in (preprocessing included).

    Attributes:
        model: the inference model (or a ``.keras`` model as saved).
        class_names: class names in label order, when known.
        dataset: the data set it was trained on, when known.
    """

    model: keras.Model
    class_names: list[str] | None = None
    dataset: str | None = None


def load_model(spec: str | os.PathLike) -> VisualizedModel:
    """Load a ``.keras`` file, or a preset (zoo name, folder or URL) as its inference model.

    Raises:
        PresetError, DownloadError, ValueError: as ``nin_keras.zoo.load_preset``.
    """
    if str(spec).endswith(".keras"):
        import nin_keras.layers  # noqa: F401  (registers the custom layers for deserialization)

        if not Path(spec).is_file():
            raise DataError(f"model file {spec} does not exist")
        return VisualizedModel(keras.saving.load_model(spec, compile=False))
    from nin_keras.zoo import load_preset

    preset = load_preset(spec)
    return VisualizedModel(preset.inference_model(input_dtype="float32"), preset.class_names, preset.metadata.get("dataset"))


def read_images(paths: Sequence[str | os.PathLike], shape: Sequence[int]) -> np.ndarray:
    """Read image files as a float32 batch of raw ``[0, 255]`` pixels of ``shape`` ``(H, W, C)``.

    Raises:
        DataError: a file is missing or not an image, or its size is not ``(H, W)`` (images are
            not resized: the maps would no longer line up with what the network saw).
    """
    from PIL import Image, UnidentifiedImageError

    height, width, channels = shape
    images = []
    for path in paths:
        try:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("L" if channels == 1 else "RGB"), dtype="float32")
        except (OSError, UnidentifiedImageError) as err:
            raise DataError(f"cannot read image {path}: {err}") from err
        if pixels.shape[:2] != (height, width):
            raise DataError(f"image {path} is {pixels.shape[1]}x{pixels.shape[0]}; the model takes {width}x{height}")
        images.append(pixels.reshape(height, width, channels))
    return np.stack(images)


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
