"""Read the files of a folder, a tar archive or a zip archive by relative name, without extracting to disk."""

from __future__ import annotations

import os
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

from nin_keras.errors import DataError

# What a truncated or corrupt gzip/tar stream raises while being read.
_ARCHIVE_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError)
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")
#: A zip member may not decompress to more than this (a zip bomb is refused, not expanded).
MAX_ZIP_MEMBER_BYTES = 256 << 20

#: How far a compressed file may expand: the publishers' files expand 1-5x (MNIST idx.gz 4.8x,
#: mnist.npz 5x, CIFAR tar.gz 1.1x), a decompression bomb about 1000x. Readers check every
#: declared size (tar member, zip member, idx header, array shape) against this before reading.
MAX_EXPANSION = 32
#: The least every file may expand to, so that small, very compressible files still read.
MIN_EXPANDED_BYTES = 64 << 20


def expanded_limit(path: str | os.PathLike) -> int:
    """The most bytes the file at ``path`` may decompress to (see ``MAX_EXPANSION``)."""
    return max(MIN_EXPANDED_BYTES, MAX_EXPANSION * Path(path).stat().st_size)


def check_declared_size(declared: int, limit: int, source: str, what: str) -> None:
    """``DataError`` unless ``declared`` bytes fit in ``limit``: called before allocating them."""
    if declared > limit:
        raise DataError(f"{source}: {what} takes {declared} bytes, more than the {limit} this file may "
                        f"expand to ({MAX_EXPANSION}x its size, at least {MIN_EXPANDED_BYTES}); refusing a "
                        f"likely decompression bomb")


def is_archive(path: Path) -> bool:
    """True for the archives this module reads (``.tar``, ``.tar.gz``, ``.tgz``, ``.zip``)."""
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def safe_member_name(name: str, archive: Path) -> PurePosixPath:
    """A member's relative path; ``DataError`` for absolute paths and ``..`` components."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise DataError(f"{archive}: refusing unsafe member path {name!r} (absolute or contains '..')")
    return PurePosixPath(*[part for part in path.parts if part != "."])


def iter_files(root: str | os.PathLike,
               select: Callable[[PurePosixPath], bool] = lambda _: True,
               on_folder: Callable[[PurePosixPath], None] | None = None,
               ) -> Iterator[tuple[PurePosixPath, bytes]]:
    """Yield ``(relative path, content)`` of every regular file under ``root`` that ``select`` keeps.

    ``root`` is a folder, a tar archive (read as one stream) or a zip archive. Archive members
    with unsafe paths raise ``DataError``; links and special files are skipped. A truncated or
    corrupt archive raises ``DataError`` naming it, and so does one whose members reach beyond
    ``expanded_limit(root)`` bytes (checked on each member's declared size before reading it).
    ``on_folder`` (if given) is called with each folder's relative path (archives: the folder
    entries they hold), so callers can find empty folders.
    """
    root = Path(root)
    if root.is_dir():
        for path in sorted(root.rglob("*")):
            relative = PurePosixPath(path.relative_to(root).as_posix())
            if path.is_dir() and not path.is_symlink() and on_folder is not None:
                on_folder(relative)
            elif path.is_file() and not path.is_symlink() and select(relative):
                yield relative, path.read_bytes()
        return
    if not is_archive(root):
        raise DataError(f"{root} is neither a folder nor a {'/'.join(ARCHIVE_SUFFIXES)} archive")
    limit = expanded_limit(root)
    try:
        if root.name.lower().endswith(".zip"):
            yield from _iter_zip(root, select, on_folder)
            return
        with tarfile.open(root, mode="r|*") as tar:
            for member in tar:
                relative = safe_member_name(member.name, root)
                check_declared_size(member.offset_data + member.size, limit, str(root), f"the data up to the end of member {member.name!r}")
                if member.isdir() and on_folder is not None:
                    on_folder(relative)
                elif member.isfile() and select(relative):
                    yield relative, tar.extractfile(member).read()
    except _ARCHIVE_ERRORS as error:
        raise DataError(f"{root}: truncated or corrupt archive ({type(error).__name__}: {error})") from error


def _iter_zip(root: Path, select, on_folder) -> Iterator[tuple[PurePosixPath, bytes]]:
    with zipfile.ZipFile(root) as archive:
        for info in archive.infolist():
            relative = safe_member_name(info.filename, root)
            if info.is_dir():
                if on_folder is not None:
                    on_folder(relative)
                continue
            if not select(relative):
                continue
            # zipfile stops decompressing at the declared size, so checking it bounds memory.
            if info.file_size > MAX_ZIP_MEMBER_BYTES:
                raise DataError(f"{root}: member {info.filename!r} declares {info.file_size} bytes, "
                                f"more than the {MAX_ZIP_MEMBER_BYTES} allowed; refused")
            data = archive.read(info)
            yield relative, data


def read_files(root: str | os.PathLike, names: list[str]) -> dict[str, bytes]:
    """Read the files ``names`` (matched by their last path components) from a folder or archive.

    Archives often wrap everything in one top-level folder (``cifar-10-batches-py/...``), so a
    name matches any member whose path ends with it. ``DataError`` lists the names not found.
    """
    wanted = {PurePosixPath(name).parts: name for name in names}

    def match(path: PurePosixPath) -> str | None:
        for parts, name in wanted.items():
            if path.parts[-len(parts):] == parts:
                return name
        return None

    found = {match(path): data for path, data in iter_files(root, lambda p: match(p) is not None)}
    missing = [name for name in names if name not in found]
    if missing:
        raise DataError(f"{root}: missing {', '.join(missing)}")
    return found
