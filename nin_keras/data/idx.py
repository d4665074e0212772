"""Reader for the idx format of MNIST and Fashion-MNIST (``*-idx3-ubyte``, optionally gzipped)."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

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
        DataError: Bad magic, unknown type code, or a file shorter or longer than its header says.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as error:
            raise DataError(f"{path}: truncated or corrupt gzip data ({error})") from error
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _DTYPES:
        raise DataError(f"{path}: not an idx file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated idx header")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(f"{path}: {len(raw)} bytes, but its header {shape} needs {expected} "
                        f"(truncated file?)")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


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
    return images.astype(np.uint8)[..., None], labels.astype(np.int64)
