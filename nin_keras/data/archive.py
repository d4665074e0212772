"""Read the files of a folder, a tar archive or a zip archive by relative name, without extracting to disk.

Links, special files and repeated names follow one rule in every reader built on this module
(class folders for ``eval``/``finetune``, ``nin-keras predict``'s folders, the CIFAR and MNIST
files): nothing is skipped silently.

- In a folder, symbolic links are followed on purpose, wherever they point, as torchvision's
  ``ImageFolder`` does: a photo folder linked into a data set is read as if it were there, under
  the link's own name (which is then its class name). The folder is the user's own disk, and
  nothing here writes. A link leading back to a folder it sits in (a loop) is refused; a link
  pointing at nothing, a FIFO, a device or a socket is refused when its name would be read, and
  otherwise goes to ``select`` like any other name (a caller that skips names lists them).
- In an archive, read in memory and never extracted, a link has nothing it could be followed to:
  symbolic and hard link members, devices and FIFOs are refused, naming the member and how to
  store the files themselves. So is a member name that appears twice (it would be read twice).
- Every archive's total expansion is bounded (``MAX_EXPANSION``): tar members by their declared
  sizes before reading, zip members by the sum of their declared sizes before reading any and by
  the bytes actually inflated while reading.
"""

from __future__ import annotations

import os
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

from nin_keras.errors import DataError

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

    ``root`` is a folder (links followed, see the module docstring), a tar archive (read as one
    stream) or a zip archive. ``on_folder`` (if given) is called with each folder's relative path
    (archives: the folder entries they hold), so callers can find empty folders.

    Raises:
        DataError: archive members with unsafe paths, link, device or FIFO members, a member name
            that appears twice, members reaching beyond ``expanded_limit(root)`` bytes, or a
            truncated or corrupt archive (all naming the archive); in a folder, a link loop, or a
            selected name that is a dangling link, a FIFO, a device or a socket.
    """
    root = Path(root)
    if root.is_dir():
        for relative, path in walk_folder(root, select, on_folder):
            yield relative, path.read_bytes()
        return
    if not is_archive(root):
        raise DataError(f"{root} is neither a folder nor a {'/'.join(ARCHIVE_SUFFIXES)} archive")
    try:
        if root.name.lower().endswith(".zip"):
            yield from _iter_zip(root, select, on_folder)
        else:
            yield from _iter_tar(root, select, on_folder)
    except DataError:
        raise
    except Exception as error:  # corrupt bytes make zipfile and tarfile raise a dozen types (BadZipFile,
        # zlib.error, EOFError, NotImplementedError for an unknown zip version, RuntimeError for an
        # "encrypted" flag, struct.error...); the caller's loop body runs outside this frame
        raise DataError(f"{root}: truncated or corrupt archive ({type(error).__name__}: {error})") from error


def walk_folder(root: str | os.PathLike, select: Callable[[PurePosixPath], bool] = lambda _: True,
                on_folder: Callable[[PurePosixPath], None] | None = None,
                ) -> Iterator[tuple[PurePosixPath, Path]]:
    """``(relative path, path)`` of every file under the folder ``root`` that ``select`` keeps,
    depth first in name order, following symbolic links (see the module docstring).

    Raises:
        DataError: a link leading back to a folder it sits in, or a selected name that is a link
            to nothing, a FIFO, a device or a socket.
    """
    root = Path(root)
    yield from _walk(root, root, PurePosixPath(), frozenset({os.path.realpath(root)}), select, on_folder)


def _walk(root: Path, folder: Path, relative: PurePosixPath, above: frozenset[str], select, on_folder):
    with os.scandir(folder) as scan:
        entries = sorted(scan, key=lambda entry: entry.name)
    for entry in entries:
        path, name = Path(entry.path), relative / entry.name
        if entry.is_dir():  # follows links
            real = os.path.realpath(path)
            if real in above:
                raise DataError(f"{root}: {name} is a link to {real}, a folder it sits in (a loop); "
                                "remove the link")
            if on_folder is not None:
                on_folder(name)
            yield from _walk(root, path, name, above | {real}, select, on_folder)
        elif select(name):
            if not entry.is_file():
                raise DataError(f"{root}: {name} {_not_a_file(path)}; refusing to read it (fix or remove it)")
            yield name, path


def _not_a_file(path: Path) -> str:
    """What a folder entry that is neither a folder nor a regular file is, in words."""
    if not path.exists():
        return f"is a symbolic link to {os.readlink(path)!r}, which does not exist"
    return f"is a {_file_kind(path.stat().st_mode)}, not a regular file"


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISLNK, "symbolic link"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"),
             (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"), (stat.S_ISDIR, "folder"))
    return next((kind for test, kind in kinds if test(mode)), f"file of type {stat.S_IFMT(mode):#o}")


_STORE_FILES = ("an archive is read without extracting it, so it may hold only files and folders: "
                "store the files themselves (tar --dereference --hard-dereference; zip without --symlinks)")


def _check_member(root: Path, name: str, relative: PurePosixPath, kind: str | None,
                  seen: set[PurePosixPath]) -> None:
    """``DataError`` for a member that is not a regular file (``kind`` says what it is) or whose
    name came before; otherwise remember the name."""
    if kind is not None:
        raise DataError(f"{root}: member {name!r} is a {kind}; {_STORE_FILES}")
    if relative in seen:
        raise DataError(f"{root}: member {name!r} appears twice (it would be read twice); re-create "
                        "the archive with each file once")
    seen.add(relative)


def _tar_kind(member: tarfile.TarInfo) -> str | None:
    """None for a regular file, else what the member is."""
    if member.isfile():
        return None
    if member.issym():
        return f"symbolic link (to {member.linkname!r})"
    if member.islnk():
        return f"hard link (to {member.linkname!r})"
    kinds = {tarfile.CHRTYPE: "character device", tarfile.BLKTYPE: "block device", tarfile.FIFOTYPE: "FIFO"}
    return kinds.get(member.type, f"member of tar type {member.type!r}")


def _iter_tar(root: Path, select, on_folder) -> Iterator[tuple[PurePosixPath, bytes]]:
    limit, seen = expanded_limit(root), set()
    with tarfile.open(root, mode="r|*") as tar:
        for member in tar:
            relative = safe_member_name(member.name, root)
            check_declared_size(member.offset_data + member.size, limit, str(root),
                                f"the data up to the end of member {member.name!r}")
            if member.isdir():
                if on_folder is not None:
                    on_folder(relative)
                continue
            _check_member(root, member.name, relative, _tar_kind(member), seen)
            if select(relative):
                yield relative, tar.extractfile(member).read()


def _zip_kind(info: zipfile.ZipInfo) -> str | None:
    """None for a regular file, else what the member is (Unix zips record links in the mode bits)."""
    kind = stat.S_IFMT(info.external_attr >> 16)
    if info.create_system != 3 or kind in (0, stat.S_IFREG):  # 0: no type recorded, a plain file
        return None
    return _file_kind(info.external_attr >> 16)


def _iter_zip(root: Path, select, on_folder) -> Iterator[tuple[PurePosixPath, bytes]]:
    limit, seen, inflated = expanded_limit(root), set(), 0
    with zipfile.ZipFile(root) as archive:
        members = archive.infolist()
        # Overlapping entries (many names sharing one compressed stream) each declare an honest
        # size: only their sum reveals the bomb, so it is checked before anything is inflated.
        check_declared_size(sum(info.file_size for info in members if not info.is_dir()), limit,
                            str(root), "the data of all its members")
        for info in members:
            relative = safe_member_name(info.filename, root)
            if info.is_dir():
                if on_folder is not None:
                    on_folder(relative)
                continue
            _check_member(root, info.filename, relative, _zip_kind(info), seen)
            if not select(relative):
                continue
            if info.file_size > MAX_ZIP_MEMBER_BYTES:
                raise DataError(f"{root}: member {info.filename!r} declares {info.file_size} bytes, "
                                f"more than the {MAX_ZIP_MEMBER_BYTES} allowed; refused")
            data = _inflate(archive, info, limit - inflated, root)
            inflated += len(data)
            yield relative, data


def _inflate(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: int, root: Path) -> bytes:
    """The member's bytes, reading at most ``budget + 1`` of them: the count of what is actually
    inflated does not rely on the declared sizes checked before."""
    with archive.open(info) as stream:
        data = stream.read(budget + 1)
    if len(data) > budget:
        raise DataError(f"{root}: member {info.filename!r} inflates the archive past the "
                        f"{expanded_limit(root)} bytes it may expand to ({MAX_EXPANSION}x its size, at least "
                        f"{MIN_EXPANDED_BYTES}); refusing a likely decompression bomb")
    return data


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
