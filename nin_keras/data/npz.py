"""Reader for ``.npz`` arrays with Keras's ``mnist.npz`` keys (``x_train``, ``y_train``, ``x_test``, ``y_test``)."""

from __future__ import annotations

import math
import os
import zipfile

import numpy as np

from nin_keras.data.archive import check_declared_size, expanded_limit
from nin_keras.data.array_checks import label_array, pixel_array
from nin_keras.errors import DataError


def read_npz_split(path: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read ``x_<split>`` and ``y_<split>`` from an ``.npz`` file.

    Returns:
        ``(images uint8 (N, H, W, C), labels int64 (N,))``; a missing channel axis (rank-3
        images, as in ``mnist.npz``) is added.

    Raises:
        DataError: Unreadable file, missing keys, arrays declaring more bytes than the file may
            expand to (checked before reading them), empty images, images that are not integer
            pixel values 0..255 or labels that are not whole numbers (``nin_keras.data.arrays``),
            or mismatched lengths.
    """
    keys = (f"x_{split}", f"y_{split}")
    try:
        _check_declared_sizes(path, keys)
        with np.load(path, allow_pickle=False) as data:
            images, labels = data[keys[0]], data[keys[1]]
    except DataError:
        raise
    except Exception as error:  # corrupt bytes make zipfile, zlib and NumPy's header parser raise a
        # dozen types (BadZipFile, zlib.error, EOFError, TokenError, SyntaxError, NotImplementedError...)
        raise DataError(f"{path}: not a readable .npz file ({type(error).__name__}: {error})") from error
    if images.ndim not in (3, 4):
        raise DataError(f"{path}: x_{split} must be images (N, H, W[, C]), got shape {images.shape}")
    if images.size == 0:
        raise DataError(f"{path}: x_{split} is empty (shape {images.shape}): no {split} images to read")
    images, labels = pixel_array(images, f"{path}:x_{split}"), label_array(labels.reshape(-1), f"{path}:y_{split}")
    if len(labels) != len(images):
        raise DataError(f"{path}: {len(images)} images but {len(labels)} labels in {split}")
    return (images[..., None] if images.ndim == 3 else images), labels


def _check_declared_sizes(path: str | os.PathLike, keys: tuple[str, ...]) -> None:
    """Before NumPy allocates anything: each array's ``.npy`` header must fit in its zip member's
    declared size, and the members together in ``expanded_limit(path)``."""
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not a .npz (zip) file")
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        missing = [key for key in keys if f"{key}.npy" not in names]
        if missing:
            raise DataError(f"{path}: no {'/'.join(missing)} arrays (has "
                            f"{', '.join(sorted(n.removesuffix('.npy') for n in names))})")
        members = [archive.getinfo(f"{key}.npy") for key in keys]
        check_declared_size(sum(m.file_size for m in members), expanded_limit(path), os.fspath(path),
                            f"arrays {'/'.join(keys)}")
        for member in members:
            with archive.open(member) as stream:
                version = np.lib.format.read_magic(stream)
                shape, _, dtype = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)(stream)
            if dtype.itemsize * math.prod(shape) > member.file_size:
                raise DataError(f"{path}: {member.filename} declares shape {shape} ({dtype}), more than its "
                                f"{member.file_size} bytes hold")
