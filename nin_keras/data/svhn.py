"""Reader for SVHN cropped digits, format 2 (``train_32x32.mat`` etc.), and the paper's split."""

from __future__ import annotations

import os

import numpy as np

from nin_keras.data.array_checks import label_array, pixel_array
from nin_keras.errors import DataError

SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat", "extra": "extra_32x32.mat"}
# Goodfellow et al. (Maxout), followed by NIN: validation = 400 per class from train
# + 200 per class from extra; the rest of train and extra is the training set.
VALID_PER_CLASS = {"train": 400, "extra": 200}


def read_svhn_mat(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a format-2 ``.mat`` file: ``X`` (32, 32, 3, N) uint8 and ``y`` (N, 1) with digit 0 stored as 10.

    Returns:
        ``(images uint8 (N, 32, 32, 3), labels int64 (N,))`` with labels 0-9.
    """
    try:
        from scipy.io import loadmat
    except ImportError as error:
        raise DataError("reading SVHN .mat files needs scipy (pip install scipy)") from error
    try:
        mat = loadmat(path)
    except Exception as error:  # scipy raises several unrelated types for corrupt files
        raise DataError(f"{path}: not a readable MATLAB .mat file ({error})") from error
    if "X" not in mat or "y" not in mat:
        raise DataError(f"{path}: no 'X' and 'y' variables (is it SVHN format 2, cropped digits?)")
    images, labels = mat["X"], mat["y"].reshape(-1)
    if images.ndim != 4 or images.shape[:3] != (32, 32, 3) or images.shape[3] != len(labels):
        raise DataError(f"{path}: X has shape {images.shape} for {len(labels)} labels, expected "
                        f"(32, 32, 3, N)")
    if labels.size and (labels.min() < 1 or labels.max() > 10):
        raise DataError(f"{path}: labels outside 1..10")
    images, labels = pixel_array(images, f"{path}:X"), label_array(labels, f"{path}:y")
    return np.ascontiguousarray(images.transpose(3, 0, 1, 2)), labels % 10


def validation_mask(labels: np.ndarray, per_class: int) -> np.ndarray:
    """Boolean mask of the first ``per_class`` examples of each class, in file order.

    pylearn2 drew these at random with its own seed; taking the first ones in file order is
    deterministic and reproducible without that code (the membership differs, the sizes don't).
    """
    mask = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        where = np.flatnonzero(labels == label)
        if len(where) < per_class:
            raise DataError(f"class {label} has {len(where)} examples, fewer than {per_class} for validation")
        mask[where[:per_class]] = True
    return mask
