"""Reader for the idx format of MNIST and Fashion-MNIST (``*-idx3-ubyte``, optionally gzipped)."""

from __future__ import annotations

import gzip
import io
import math
import os
import zlib
from pathlib import Path

import numpy as np

from nin_keras.data.archive import check_declared_size, expanded_limit
from nin_keras.data.array_checks import label_array, pixel_array
from nin_keras.errors import DataError

# idx type codes -> big-endian NumPy dtypes (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT").
_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

# File names of the four files, by split.
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an idx file (raw or gzip-compressed, told apart by the gzip magic bytes).

    The header is two zero bytes, a type code, the number of dimensions ``n``, then ``n``
    big-endian uint32 sizes; the data follow in row-major order.

    Returns:
        The array in native byte order, with the file's shape.

    Raises:
        DataError: Bad magic, unknown type code, a file shorter or longer than its header says,
            or a header declaring more data than the file may expand to
            (``nin_keras.data.archive.expanded_limit``; checked before decompressing the data).
    """
    path = Path(path)
    with open(path, "rb") as file:
        gzipped = file.read(2) == b"\x1f\x8b"
    try:
        with (gzip.open(path, "rb") if gzipped else open(path, "rb")) as stream:
            return _parse(stream, path, gzipped)
    except (EOFError, OSError, zlib.error) as error:
        raise DataError(f"{path}: truncated or corrupt gzip data ({error})") from error


def _parse(stream: io.BufferedIOBase, path: Path, gzipped: bool) -> np.ndarray:
    """Header, then exactly the data it declares. The declared size is checked before reading:
    a raw file cannot hold more than its size, a gzip stream more than ``expanded_limit``."""
    magic = stream.read(4)
    if len(magic) < 4 or magic[:2] != b"\x00\x00" or magic[2] not in _DTYPES:
        raise DataError(f"{path}: not an idx file (bad magic number {magic.hex()})")
    ndim = magic[3]
    dims = stream.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise DataError(f"{path}: truncated idx header")
    shape = tuple(int(d) for d in np.frombuffer(dims, dtype=">u4"))
    dtype = np.dtype(_DTYPES[magic[2]])
    header = 4 + 4 * ndim
    expected = header + math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    if gzipped:
        check_declared_size(expected, expanded_limit(path), str(path), f"the idx header {shape} ({dtype.name})")
    elif expected > path.stat().st_size:
        raise DataError(f"{path}: {path.stat().st_size} bytes, but its header {shape} needs {expected} "
                        f"(truncated file?)")
    data = stream.read(expected - header + 1)  # one byte more reveals a file longer than declared
    if header + len(data) > expected:
        raise DataError(f"{path}: longer than the {expected} bytes its header {shape} declares")
    if header + len(data) < expected:
        raise DataError(f"{path}: {header + len(data)} bytes, but its header {shape} needs {expected} "
                        f"(truncated file?)")
    return np.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def find_idx(folder: Path, stem: str) -> Path | None:
    """``folder/stem.gz`` or ``folder/stem`` (also the ``stem.idx3-ubyte`` dot spelling), if present."""
    spellings = (stem, stem.replace("-idx", ".idx"))
    for name in spellings:
        for candidate in (folder / f"{name}.gz", folder / name):
            if candidate.is_file():
                return candidate
    return None


def read_idx_split(folder: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read ``split`` (``"train"``/``"test"``) from a folder of the four idx files.

    Returns:
        ``(images uint8 (N, 28, 28, 1), labels int64 (N,))``.

    Raises:
        DataError: a missing or unreadable file (see :func:`read_idx`), images and labels that
            do not match, no images, or values that are not pixels or labels.
    """
    folder = Path(folder)
    if split not in IDX_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    paths = [find_idx(folder, stem) for stem in IDX_FILES[split]]
    if None in paths:
        raise DataError(f"{folder}: missing {' or '.join(s for s, p in zip(IDX_FILES[split], paths) if p is None)}"
                        f" (.gz or raw)")
    images, labels = (read_idx(p) for p in paths)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{folder}: idx images {images.shape} and labels {labels.shape} do not match")
    if images.size == 0:
        raise DataError(f"{paths[0]}: holds no images (shape {images.shape}): no {split} images to read")
    return pixel_array(images, str(paths[0]))[..., None], label_array(labels, str(paths[1]))
