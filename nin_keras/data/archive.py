"""Read the files of a folder or a tar archive by relative name, without extracting to disk."""

from __future__ import annotations

import os
import tarfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

from nin_keras.errors import DataError

# What a truncated or corrupt gzip/tar stream raises while being read.
_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError)


def is_archive(path: Path) -> bool:
    """True for the tar archives this module reads (``.tar``, ``.tar.gz``, ``.tgz``)."""
    return path.is_file() and path.name.endswith((".tar", ".tar.gz", ".tgz"))


def safe_member_name(name: str, archive: Path) -> PurePosixPath:
    """A member's relative path; ``DataError`` for absolute paths and ``..`` components."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise DataError(f"{archive}: refusing unsafe member path {name!r} (absolute or contains '..')")
    return PurePosixPath(*[part for part in path.parts if part != "."])


def iter_files(root: str | os.PathLike,
               select: Callable[[PurePosixPath], bool] = lambda _: True,
               ) -> Iterator[tuple[PurePosixPath, bytes]]:
    """Yield ``(relative path, content)`` of every regular file under ``root`` that ``select`` keeps.

    ``root`` is a folder or a tar archive (read as one stream). Archive members with unsafe paths
    raise ``DataError``; links and special files are skipped. A truncated or corrupt archive
    raises ``DataError`` naming it.
    """
    root = Path(root)
    if root.is_dir():
        for path in sorted(root.rglob("*")):
            relative = PurePosixPath(path.relative_to(root).as_posix())
            if path.is_file() and not path.is_symlink() and select(relative):
                yield relative, path.read_bytes()
        return
    if not is_archive(root):
        raise DataError(f"{root} is neither a folder nor a .tar/.tar.gz/.tgz archive")
    try:
        with tarfile.open(root, mode="r|*") as tar:
            for member in tar:
                relative = safe_member_name(member.name, root)
                if member.isfile() and select(relative):
                    yield relative, tar.extractfile(member).read()
    except _ARCHIVE_ERRORS as error:
        raise DataError(f"{root}: truncated or corrupt archive ({type(error).__name__}: {error})") from error


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
