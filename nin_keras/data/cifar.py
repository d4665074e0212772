"""Readers for the CIFAR-10/100 distributions: the python pickles and the binary version.

Both store each image as 3072 bytes, the red 32x32 plane, then green, then blue (row-major).
The readers take the extracted folder (``cifar-10-batches-py``, ``cifar-100-python``,
``cifar-10-batches-bin``, ``cifar-100-binary``) or the publisher's ``.tar.gz`` of it.
"""

from __future__ import annotations

import functools
import io
import math
import os
import pickle

import numpy as np

from nin_keras.data.archive import read_files
from nin_keras.data.array_checks import label_array, pixel_array
from nin_keras.errors import DataError

_PYTHON_FILES = {
    "cifar10": {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
    "cifar100": {"train": ["train"], "test": ["test"]},
}
_BINARY_FILES = {
    "cifar10": {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]},
    "cifar100": {"train": ["train.bin"], "test": ["test.bin"]},
}
_IMAGE_BYTES = 32 * 32 * 3

Arrays = dict[str, tuple[np.ndarray, np.ndarray]]


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists and NumPy arrays only, so a crafted file cannot run code, and no
    array larger than the pickle itself, so a crafted file cannot make it allocate gigabytes.

    A real batch carries its pixels as bytes inside the pickle (``_reconstruct`` an empty array,
    then fill it from those bytes), so no array it holds can exceed the pickle's size; a 113-byte
    pickle calling ``numpy.ndarray((100000, 3072))`` asks for 300 MB and is refused before the
    allocation.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def __init__(self, data: bytes):
        super().__init__(io.BytesIO(data), encoding="bytes")
        self._limit = len(data)

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")
        found = super().find_class(module, name)
        if name == "ndarray":
            return self._ndarray
        if name == "_reconstruct":
            return functools.partial(self._reconstruct, found)
        return found

    def _check_size(self, shape, dtype) -> None:
        dims = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
        requested = math.prod(int(d) for d in dims) * np.dtype(dtype).itemsize
        if requested > self._limit:
            raise pickle.UnpicklingError(f"an array of shape {dims} ({requested} bytes) is larger than the "
                                         f"{self._limit}-byte pickle that declares it")

    def _ndarray(self, shape, dtype=float, buffer=None, *args, **kwargs):
        if buffer is None:  # allocates; with a buffer it is a view of bytes already in the pickle
            self._check_size(shape, dtype)
        return np.ndarray(shape, dtype, buffer, *args, **kwargs)

    def _reconstruct(self, reconstruct, subtype, shape, dtype):
        if subtype != self._ndarray:
            raise pickle.UnpicklingError(f"_reconstruct of {subtype!r} is not allowed in a CIFAR batch")
        self._check_size(shape, dtype)
        return reconstruct(np.ndarray, shape, dtype)


def _to_images(flat, source: str) -> np.ndarray:
    flat = pixel_array(flat, source)
    if flat.ndim != 2 or flat.shape[1] != _IMAGE_BYTES:
        raise DataError(f"{source}: expected rows of {_IMAGE_BYTES} pixel bytes, got shape {flat.shape}")
    if len(flat) == 0:
        raise DataError(f"{source}: holds no images (shape {flat.shape})")
    return flat.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def _check_split(name: str, split: str) -> None:
    if name not in _PYTHON_FILES:
        raise ValueError(f"name must be 'cifar10' or 'cifar100', got {name!r}")
    if split not in _PYTHON_FILES[name]:
        raise ValueError(f"split must be 'train' or 'test' for {name}, got {split!r}")


def read_cifar_python(path: str | os.PathLike, name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read one split of the python-pickle version.

    Args:
        path: ``cifar-10-batches-py`` / ``cifar-100-python`` folder, or its ``.tar.gz``.
        name: ``"cifar10"`` or ``"cifar100"`` (fine labels).
        split: ``"train"`` or ``"test"``.

    Returns:
        ``(images uint8 (N, 32, 32, 3), labels int64 (N,))`` in file order.
    """
    _check_split(name, split)
    label_key = b"labels" if name == "cifar10" else b"fine_labels"
    files = _PYTHON_FILES[name][split]
    images, labels = [], []
    found = read_files(path, files)
    for file_name in files:
        source = f"{path}:{file_name}"
        try:
            batch = _ArrayUnpickler(found[file_name]).load()
        except Exception as error:  # any unpickling failure means a corrupt or foreign file
            raise DataError(f"{source}: not a CIFAR python batch ({error})") from error
        if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
            raise DataError(f"{source}: missing the b'data' or {label_key!r} entry")
        images.append(_to_images(batch[b"data"], source))
        labels.append(label_array(batch[label_key], source))
        if len(labels[-1]) != len(images[-1]):
            raise DataError(f"{source}: {len(images[-1])} images but {len(labels[-1])} labels")
    return np.concatenate(images), np.concatenate(labels)


def read_cifar_binary(path: str | os.PathLike, name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read one split of the binary version.

    Each record is one label byte (CIFAR-10) or a coarse then a fine label byte (CIFAR-100),
    followed by the 3072 pixel bytes. Arguments and return value as ``read_cifar_python``
    (``path``: ``cifar-10-batches-bin`` / ``cifar-100-binary`` or its ``.tar.gz``).
    """
    _check_split(name, split)
    label_bytes = 1 if name == "cifar10" else 2
    record = label_bytes + _IMAGE_BYTES
    files = _BINARY_FILES[name][split]
    images, labels = [], []
    found = read_files(path, files)
    for file_name in files:
        data = found[file_name]
        if len(data) == 0 or len(data) % record:
            raise DataError(f"{path}:{file_name}: {len(data)} bytes is not a whole number of "
                            f"{record}-byte records (truncated file?)")
        rows = np.frombuffer(data, dtype=np.uint8).reshape(-1, record)
        labels.append(rows[:, label_bytes - 1].astype(np.int64))
        images.append(_to_images(rows[:, label_bytes:], f"{path}:{file_name}"))
    return np.concatenate(images), np.concatenate(labels)
