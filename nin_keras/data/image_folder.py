"""Reader for class-folder image sets (``<split>/<class>/<file>.png|jpg``), as a folder or a tar archive.

Decoding tens of thousands of JPEGs takes a while, so the arrays decoded from an archive are
cached as an ``.npz`` in ``nin_keras.data.locate.cache_dir()``, keyed by the archive's path,
size and modification time.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from nin_keras.data.archive import is_archive, iter_files
from nin_keras.data.locate import cache_dir
from nin_keras.errors import DataError
from nin_keras.io_utils import atomic_write

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_MODES = {"L": 1, "RGB": 3}

Splits = dict[str, tuple[np.ndarray, np.ndarray]]


def _natural_key(name: str) -> list:
    """Sort ``img2`` before ``img10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _decode(data: bytes, source: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.mode not in _MODES:
                image = image.convert("RGB")
            array = np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise DataError(f"{source}: cannot decode image ({error})") from error
    return array[..., None] if array.ndim == 2 else array


def decode_image_folder(root: str | os.PathLike, class_names: tuple[str, ...] | None = None) -> Splits:
    """Decode every image under ``root`` into per-split arrays.

    Layout: ``[prefix/]<split>/<class>/<file>`` (splits such as ``train`` and ``test``), or
    ``<class>/<file>`` directly, which is read as split ``"train"``. Within a split, examples are
    ordered by label, then by file name in natural order.

    Args:
        root: A folder or a ``.tar``/``.tar.gz``/``.tgz`` archive of one.
        class_names: Class folder names in label order; by default the sorted folder names.

    Returns:
        ``{split: (images uint8 (N, H, W, C), labels int64 (N,))}``.

    Raises:
        DataError: No images, an undecodable image, images of different shapes, a class folder
            not in ``class_names``, or (for archives) unsafe member paths or truncation.
    """
    entries: dict[str, list[tuple[str, str, np.ndarray]]] = {}
    in_class_folder = lambda p: p.suffix.lower() in IMAGE_SUFFIXES and len(p.parts) >= 2  # noqa: E731
    for path, data in iter_files(root, in_class_folder):
        split = path.parts[-3] if len(path.parts) >= 3 else "train"
        entries.setdefault(split, []).append((path.parts[-2], path.name,
                                              _decode(data, f"{root}:{path}")))
    if not entries:
        raise DataError(f"{root}: no {'/'.join(IMAGE_SUFFIXES)} images found (expected "
                        f"<split>/<class>/<image> or <class>/<image>)")
    folders = sorted({folder for items in entries.values() for folder, _, _ in items})
    names = tuple(class_names) if class_names is not None else tuple(folders)
    unknown = [folder for folder in folders if folder not in names]
    if unknown:
        raise DataError(f"{root}: class folders {unknown} are not among the classes {list(names)}")
    label_of = {name: index for index, name in enumerate(names)}
    shapes = {image.shape for items in entries.values() for _, _, image in items}
    if len(shapes) != 1:
        raise DataError(f"{root}: images have different shapes {sorted(shapes)}")
    splits = {}
    for split, items in entries.items():
        items.sort(key=lambda item: (label_of[item[0]], _natural_key(item[1])))
        splits[split] = (np.stack([image for _, _, image in items]),
                         np.array([label_of[folder] for folder, _, _ in items], dtype=np.int64))
    return splits


def read_image_folder(root: str | os.PathLike, split: str,
                      class_names: tuple[str, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One split of ``decode_image_folder(root)``, cached on disk when ``root`` is an archive."""
    root = Path(root)
    splits = _cached(root, class_names) if is_archive(root) else decode_image_folder(root, class_names)
    if split not in splits:
        raise DataError(f"{root}: no split {split!r} (found {', '.join(sorted(splits))})")
    return splits[split]


def _cached(archive: Path, class_names: tuple[str, ...] | None) -> Splits:
    stat = archive.stat()
    key = hashlib.sha256(f"{archive.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{class_names}"
                         .encode()).hexdigest()[:16]
    path = cache_dir() / f"{archive.name.split('.')[0]}-{key}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as data:
                return {name[2:]: (data[name], data["y_" + name[2:]])
                        for name in data.files if name.startswith("x_")}
        except (OSError, ValueError, KeyError):
            pass  # an unreadable cache is rebuilt below
    splits = decode_image_folder(archive, class_names)
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **{f"{prefix}_{split}": arrays[i] for split, arrays in splits.items()
                       for i, prefix in enumerate(("x", "y"))})
    return splits
