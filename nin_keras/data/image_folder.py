"""Reader for class-folder image sets (``[<split>/]<class>/<image>``), as a folder or a tar/zip archive.

The layout is ``<class>/<image>`` (all one split, read as ``"train"``) or
``<split>/<class>/<image>`` with split folders named ``train``, ``test``, ``val``, ``valid`` or
``validation``, optionally inside one wrapping folder. Images are decoded by
``nin_keras.data.input_policy``: with an ``InputPolicy`` every image, of any size and mode,
becomes the model's input; without one, images keep their size (and must all share it).

What is refused and what is skipped:

- files whose names do not end in an image suffix (``notes.txt``), hidden files (``.DS_Store``,
  macOS ``._cat.jpg``) and ``__MACOSX`` folders are skipped, with one ``UserWarning`` naming them;
- image files that cannot be decoded (corrupt, truncated, not really an image, too many pixels)
  are refused: one ``DataError`` lists every such file and why, since training or measuring on
  a silently smaller set would misreport what was done;
- an empty class folder, a split whose classes differ from the other splits', or class folders
  not among the expected ``class_names`` are refused naming the folders and both lists;
- a class folder whose name is not valid UTF-8 is refused naming it (its bytes shown as
  ``\\xe9``): a class name is written to JSON metadata and printed by ``nin-keras predict``;
- symbolic links in a folder are followed, wherever they point (a linked photo folder is a class
  named after the link); in an archive, link, device and FIFO members and repeated member names
  are refused (``nin_keras.data.archive`` states the rule, the same for every reader).

Images are decoded in worker processes, one per usable CPU by default (``workers``;
``nin_keras.data.decode_pool``: the arrays are the same for any number). Decoding tens of
thousands of JPEGs still takes a while, so the arrays decoded from an archive are cached as an
``.npz`` in ``nin_keras.data.locate.cache_dir()``, keyed by the archive's path, size,
modification time, class names and input policy.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import re
import warnings
from pathlib import Path, PurePosixPath

import numpy as np

from nin_keras.data.archive import is_archive, iter_files, walk_folder
from nin_keras.data.decode_pool import decode_files
from nin_keras.data.image_decode import IMAGE_SUFFIXES
from nin_keras.data.input_policy import InputPolicy
from nin_keras.data.locate import cache_dir
from nin_keras.errors import DataError, ImageError
from nin_keras.io_utils import atomic_write

#: Folder names read as splits (``val``, ``valid`` and ``validation`` are all validation sets).
SPLIT_NAMES = ("train", "test", "val", "valid", "validation")
#: Undecodable files named in full in an error message; the rest are counted.
_LISTED = 20

Splits = dict[str, tuple[np.ndarray, np.ndarray]]


@dataclasses.dataclass
class LabelledImages:
    """What :func:`read_labelled_images` found.

    Attributes:
        root: the folder or archive read.
        class_names: class folder names in label order.
        splits: ``{split: (uint8 images (N, H, W, C), int64 labels (N,))}``; a folder without
            split folders is one split, ``"train"``.
        has_splits: whether the images sat in split folders.
        skipped: relative paths of the non-image files that were skipped.
    """

    root: Path
    class_names: tuple[str, ...]
    splits: Splits
    has_splits: bool
    skipped: list[str]


def _natural_key(name: str) -> list:
    """Sort ``img2`` before ``img10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _hidden(path: PurePosixPath) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in path.parts)


def _place(path: PurePosixPath) -> tuple[str, str] | None:
    """``(split, class)`` of an image at ``path``, or None when it is not inside a class folder."""
    if len(path.parts) < 2:
        return None
    split = path.parts[-3] if len(path.parts) >= 3 and path.parts[-3] in SPLIT_NAMES else None
    return (split or "", path.parts[-2])


def read_labelled_images(root: str | os.PathLike, class_names: tuple[str, ...] | None = None,
                         policy: InputPolicy | None = None, min_classes: int = 1,
                         workers: int | None = None) -> LabelledImages:
    """Decode every image under ``root`` into per-split arrays (see the module docstring).

    Within a split, examples are ordered by label, then by file name in natural order.

    Args:
        root: a folder, or a ``.tar``/``.tar.gz``/``.tgz``/``.zip`` archive of one.
        class_names: class folder names in label order (a split may hold a subset); by default
            the sorted folder names.
        policy: how each image becomes the model's input; ``None`` decodes at the file's own
            size (grayscale files stay one channel, everything else RGB).
        min_classes: refuse fewer class folders than this (``2`` for training a classifier).
        workers: processes decoding the images (``nin_keras.data.decode_pool``; the result is the
            same for any number): ``None`` one per usable CPU, at most
            ``decode_pool.MAX_DEFAULT_WORKERS``; ``1`` this process only.

    Returns:
        A :class:`LabelledImages`.

    Raises:
        ValueError: ``workers`` is not a whole number >= 1.
        DataError: no images, undecodable images (all listed), an empty class folder, too few
            classes, class folders not in ``class_names`` (both lists given), images of different
            shapes without a policy, or (archives) unsafe member paths or truncation.
    """
    root = Path(root)
    entries: dict[str, list[tuple[str, str, np.ndarray]]] = {}
    skipped: list[str] = []
    failures: list[str] = []
    folders: set[PurePosixPath] = set()

    def wanted(path: PurePosixPath) -> bool:
        if _hidden(path) or path.suffix.lower() not in IMAGE_SUFFIXES or _place(path) is None:
            skipped.append(str(path))
            return False
        return True

    def found_files():
        for path, data in iter_files(root, wanted, on_folder=folders.add):
            yield (*_place(path), path.name), data, f"{root}:{path}"

    for (split, folder, name), image in decode_files(found_files(), policy, workers):
        if isinstance(image, ImageError):
            failures.append(str(image))
        else:
            entries.setdefault(split, []).append((folder, name, image))
    if failures:
        listed = "\n  ".join(failures[:_LISTED])
        more = f"\n  ... and {len(failures) - _LISTED} more" if len(failures) > _LISTED else ""
        raise DataError(f"{root}: {len(failures)} image file(s) cannot be decoded (fix or remove "
                        f"them):\n  {listed}{more}")
    if not entries:
        raise DataError(f"{root}: no {'/'.join(IMAGE_SUFFIXES)} images found (expected "
                        f"<class>/<image> or <split>/<class>/<image>, splits {'/'.join(SPLIT_NAMES)})")
    if skipped:
        warnings.warn(f"{root}: skipped {len(skipped)} file(s) that are not images or are hidden: "
                      f"{', '.join(skipped[:_LISTED])}{' ...' if len(skipped) > _LISTED else ''}",
                      UserWarning, stacklevel=2)
    has_splits = "" not in entries
    if not has_splits and len(entries) > 1:
        raise DataError(f"{root}: images both in split folders ({', '.join(sorted(s for s in entries if s))}) "
                        f"and directly in class folders; use one layout")
    _check_no_empty_class_folder(root, folders, entries)
    found = sorted({folder for items in entries.values() for folder, _, _ in items})
    _check_utf8_class_names(root, found)
    names = tuple(class_names) if class_names is not None else tuple(found)
    unknown = [folder for folder in found if folder not in names]
    if unknown:
        raise DataError(f"{root}: class folders {unknown} are not among the classes {list(names)} "
                        f"(the folders are {found})")
    if len(found) < min_classes:
        raise DataError(f"{root}: found {len(found)} class folder(s) {found}; at least {min_classes} "
                        "are needed (one folder per class, named after it)")
    shapes = {image.shape for items in entries.values() for _, _, image in items}
    if len(shapes) != 1:
        raise DataError(f"{root}: images have different shapes {sorted(shapes)} (give an input "
                        "policy to resize them)")
    label_of = {name: index for index, name in enumerate(names)}
    splits = {}
    for split, items in entries.items():
        items.sort(key=lambda item: (label_of[item[0]], _natural_key(item[1])))
        splits[split or "train"] = (np.stack([image for _, _, image in items]),
                                    np.array([label_of[folder] for folder, _, _ in items], dtype=np.int64))
    return LabelledImages(root, names, splits, has_splits, skipped)


def printable_path(path: str | os.PathLike) -> str:
    """``path`` as text any UTF-8 stream can take: bytes of a file name that are not UTF-8 (which
    Python keeps as lone surrogates) are shown as ``\\xe9`` escapes instead of failing to print."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _check_utf8_class_names(root: Path, found: list[str]) -> None:
    """A class name goes into JSON metadata and onto the terminal: its bytes must be UTF-8."""
    bad = [printable_path(name) for name in found if printable_path(name) != name]
    if bad:
        raise DataError(f"{printable_path(root)}: class folder name(s) {', '.join(bad)} are not valid UTF-8 "
                        "(shown with \\x escapes); rename the folders")


def _check_no_empty_class_folder(root: Path, folders: set[PurePosixPath], entries) -> None:
    """A class folder without a single image would silently drop that class.

    A class folder is a leaf folder (no subfolders) that is not a split folder, sitting in a
    split folder (split layout) or anywhere (flat layout).
    """
    used = {(split, folder) for split, items in entries.items() for folder, _, _ in items}
    splits = {split for split in entries if split}
    parents = {folder.parent for folder in folders}
    empty = []
    for folder in folders:
        if _hidden(folder) or folder in parents or folder.name in SPLIT_NAMES:
            continue
        split = folder.parent.name if folder.parent.name in splits else ""
        if (split or not splits) and (split, folder.name) not in used:
            empty.append(str(folder))
    if empty:
        raise DataError(f"{root}: class folder(s) {sorted(empty)} hold no images; add images or "
                        "remove the folder")


def decode_image_folder(root: str | os.PathLike, class_names: tuple[str, ...] | None = None,
                        policy: InputPolicy | None = None, workers: int | None = None) -> Splits:
    """``read_labelled_images(root, class_names, policy, workers=workers).splits`` (see there)."""
    return read_labelled_images(root, class_names, policy, workers=workers).splits


def read_image_folder(root: str | os.PathLike, split: str, class_names: tuple[str, ...] | None = None,
                      policy: InputPolicy | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One split of ``decode_image_folder(root)`` (the default workers), cached on disk when
    ``root`` is an archive."""
    root = Path(root)
    splits = (_cached(root, class_names, policy) if is_archive(root)
              else decode_image_folder(root, class_names, policy))
    if split not in splits:
        raise DataError(f"{root}: no split {split!r} (found {', '.join(sorted(splits))})")
    return splits[split]


def _cached(archive: Path, class_names: tuple[str, ...] | None, policy: InputPolicy | None) -> Splits:
    stat = archive.stat()
    # Without a policy the key is what it was before policies existed: old caches stay valid.
    described = "" if policy is None else "|" + json.dumps(policy.to_dict(), sort_keys=True)
    key = hashlib.sha256(f"{archive.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{class_names}{described}"
                         .encode()).hexdigest()[:16]
    path = cache_dir() / f"{archive.name.split('.')[0]}-{key}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as data:
                return {name[2:]: (data[name], data["y_" + name[2:]])
                        for name in data.files if name.startswith("x_")}
        except (OSError, ValueError, KeyError):
            pass  # an unreadable cache is rebuilt below
    splits = decode_image_folder(archive, class_names, policy)
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **{f"{prefix}_{split}": arrays[i] for split, arrays in splits.items()
                       for i, prefix in enumerate(("x", "y"))})
    return splits


def _image_name(path: PurePosixPath) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not _hidden(path)


def list_image_files(specs: list[str | os.PathLike]) -> list[str]:
    """Image files named by ``specs``: files, folders (every image file below, in natural order,
    following symbolic links as the class-folder reader does) and glob patterns (``photos/*.jpg``,
    ``**`` for any depth).

    Raises:
        DataError: a name that is no file or folder and matches nothing, a folder without image
            files (naming it and the suffixes looked for), or, below a folder, an image name that
            is a link to nothing, a FIFO, a device or a socket, or a link loop.
    """
    found: list[str] = []
    for spec in map(os.fspath, specs):
        path = Path(spec)
        if path.is_dir():
            below = sorted((file for _, file in walk_folder(path, _image_name)),
                           key=lambda p: _natural_key(p.as_posix()))
            if not below:
                raise DataError(f"{spec}: folder holds no {'/'.join(IMAGE_SUFFIXES)} files")
            found += map(str, below)
        elif path.exists() or not glob.has_magic(spec):
            found.append(spec)  # a missing plain name is reported when it is read, naming it
        else:
            matches = sorted(glob.glob(spec, recursive=True), key=_natural_key)
            if not matches:
                raise DataError(f"{spec}: the pattern matches no file")
            found += matches
    return found
