"""Reader for ``.npz`` arrays with Keras's ``mnist.npz`` keys (``x_train``, ``y_train``, ``x_test``, ``y_test``)."""

from __future__ import annotations

import os
import zipfile

import numpy as np

from nin_keras.errors import DataError


def read_npz_split(path: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read ``x_<split>`` and ``y_<split>`` from an ``.npz`` file.

    Returns:
        ``(images uint8 (N, H, W, C), labels int64 (N,))``; a missing channel axis (rank-3
        images, as in ``mnist.npz``) is added.

    Raises:
        DataError: Unreadable file, missing keys, non-uint8 images or mismatched lengths.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            if f"x_{split}" not in data or f"y_{split}" not in data:
                raise DataError(f"{path}: no x_{split}/y_{split} arrays (has {', '.join(data.files)})")
            images, labels = data[f"x_{split}"], data[f"y_{split}"]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise DataError(f"{path}: not a readable .npz file ({error})") from error
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise DataError(f"{path}: x_{split} must be uint8 images (N, H, W[, C]), got "
                        f"{images.dtype} {images.shape}")
    labels = labels.reshape(-1).astype(np.int64)
    if len(labels) != len(images):
        raise DataError(f"{path}: {len(images)} images but {len(labels)} labels in {split}")
    return (images[..., None] if images.ndim == 3 else images), labels
