"""What every classifier (``ImageClassifier``, the deployment ``Predictor``) takes and gives:
a checked ``float32`` batch from image files or arrays, and the top-``k`` named classes of its
probabilities. NumPy only: deployment imports it without TensorFlow or Keras."""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import numpy as np

from nin_keras.errors import Argument, ArgumentError

ImageInput = str | os.PathLike | np.ndarray | Sequence[str | os.PathLike]


def check_top_k(top_k: Any) -> None:
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise ArgumentError(Argument("top_k"), f" must be a positive integer, got {top_k!r}")


def top_k_classes(probabilities: np.ndarray, class_names: Sequence[str],
                  top_k: int = 5) -> list[list[tuple[str, float]]]:
    """The ``top_k`` most probable ``(class name, probability)`` pairs of each row, most probable
    first (ties keep class order)."""
    k = min(top_k, probabilities.shape[-1])
    order = np.argsort(-probabilities, axis=-1, kind="stable")[:, :k]
    return [[(class_names[c], float(p[c])) for c in row] for row, p in zip(order, probabilities)]


def are_paths(images: Any) -> bool:
    return isinstance(images, (str, os.PathLike)) or (
        isinstance(images, (list, tuple)) and bool(images)
        and all(isinstance(i, (str, os.PathLike)) for i in images))


def image_batch(images: ImageInput, input_shape: Sequence[int], read: Callable[[Any], np.ndarray],
                raw_pixels: bool = True) -> np.ndarray:
    """A checked ``float32 (N, H, W, C)`` batch from image files or arrays.

    Args:
        images: a path, a list of paths, one image ``(H, W, C)`` (``(H, W)`` for one channel)
            or a batch ``(N, H, W, C)``; arrays are uint8, or float in ``[0, 255]`` (any finite
            float when ``raw_pixels`` is False: preprocessed network inputs).
        input_shape: the model's ``(H, W, C)``.
        read: turns one path into an ``(H, W, C)`` uint8 array (an input policy).
        raw_pixels: whether the model takes raw pixels.

    Raises:
        ValueError: empty batch, wrong shape or dtype, non-finite or out-of-range values, or an
            unreadable image file.
    """
    if isinstance(images, (str, os.PathLike)):
        images = [images]
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("images is an empty list")
        images = np.stack([read(p) for p in images]) if are_paths(images) else np.asarray(images)
    if not isinstance(images, np.ndarray):
        raise ValueError(f"images must be file paths or a NumPy array, got {type(images).__name__}")
    height, width, channels = input_shape
    if images.ndim == 2 and channels == 1:
        images = images[None, :, :, None]
    elif images.ndim == 3 and images.shape == (height, width, channels):
        images = images[None]
    elif images.ndim == 3 and channels == 1 and images.shape[1:] == (height, width):
        images = images[..., None]
    if images.ndim != 4 or images.shape[1:] != (height, width, channels):
        raise ValueError(f"images must have shape (N, {height}, {width}, {channels}) or one "
                         f"image's shape, got {images.shape}")
    if len(images) == 0:
        raise ValueError("images is an empty batch")
    if images.dtype == np.uint8:
        if not raw_pixels:
            raise ValueError("this artifact takes preprocessed float inputs, got uint8 pixels")
        return images.astype(np.float32)
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"images must be uint8 or float, got dtype {images.dtype}")
    if not np.isfinite(images).all():
        raise ValueError("images contain NaN or infinite values")
    if raw_pixels and (images.min() < 0 or images.max() > 255):
        raise ValueError(f"float pixel values must lie in [0, 255], got "
                         f"[{images.min():g}, {images.max():g}]")
    return images.astype(np.float32)
