"""Atomic file and folder writes: a failed write leaves nothing half-written behind."""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from nin_keras.errors import Argument, OutputExistsError

# mkstemp/mkdtemp create private (0600/0700) entries; finished files get the usual umask-based
# modes instead, so a shared cache or a bundled preset stays readable. Read once: os.umask sets it.
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    The temporary file lives in the same folder so the final ``os.replace`` is atomic. If the
    body raises, the temporary file is removed and ``path`` is left as it was.

    Example:
        >>> with atomic_write("weights.h5") as tmp:
        ...     model.save_weights(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_writers_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".part" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def remove_orphaned_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that ``atomic_write(path)`` calls killed mid-write left beside
    ``path`` (``kill -9`` skips their cleanup), and return them.

    Call it only while holding a lock that every writer of ``path`` takes, so that no live
    writer's temporary file is among them.
    """
    path = Path(path)
    removed = []
    for orphan in path.parent.glob(f".{glob.escape(path.name)}.*.part{glob.escape(path.suffix)}"):
        with contextlib.suppress(FileNotFoundError):
            orphan.unlink()
            removed.append(orphan)
    return removed


def remove_dead_writers_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete what ``atomic_write(path)`` / ``atomic_dir(path)`` calls of processes that no longer
    run left beside ``path`` (a ``kill -9`` skips their cleanup), and return it.

    Temporaries carry their writer's process id (``.<name>.<pid>.<random>.part...``,
    ``.<name>.old-<pid>``); only those of dead processes are removed, so a live writer's work is
    never touched and no lock is needed. (A writer in another PID namespace sharing the folder
    would look dead: do not share an output folder between containers while writing.)
    """
    path = Path(path)
    removed = []
    for entry in path.parent.glob(f".{glob.escape(path.name)}.*"):
        match = _WRITER_PID.match(entry.name[len(path.name) + 2:])
        if match is None or _process_alive(int(match.group(1) or match.group(2))):
            continue
        _remove(entry)
        removed.append(entry)
    return removed


# After ".<name>.": "<pid>.<random>.part..." (a temporary) or "old-<pid>" (a replaced folder).
_WRITER_PID = re.compile(r"(?:(\d+)\.[^.]+\.part.*|old-(\d+))$")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    return True


def _remove(path: Path) -> None:
    """Delete a file, link or folder tree."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success move it into place as ``path``.

    With ``overwrite=True`` an existing ``path`` (folder or file) is replaced only after the new
    folder is complete. Writers of the same ``path`` may run at once (processes or threads): each
    fills its own temporary, and the moves into place take turns under a lock on the parent
    folder, so every writer succeeds and ``path`` is always one writer's complete folder (the
    last to finish). Temporaries that killed writers of ``path`` left are removed first
    (``remove_dead_writers_temporaries``).

    Raises:
        FileExistsError: ``path`` exists (also when another writer created it meanwhile) and
            ``overwrite`` is False.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} already exists (pass ", Argument("overwrite", True), " to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_writers_temporaries(path)
    tmp_path = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".part", dir=path.parent))
    os.chmod(tmp_path, 0o777 & ~_UMASK)
    try:
        yield tmp_path
        with _folder_lock(path.parent):
            _move_into_place(tmp_path, path, overwrite)
    finally:
        if tmp_path.exists():
            shutil.rmtree(tmp_path, ignore_errors=True)


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``folder`` itself: it serializes every process and thread
    (each opens its own descriptor) and, unlike a lock file, leaves nothing beside the output."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _move_into_place(tmp_path: Path, path: Path, overwrite: bool) -> None:
    """Rename ``tmp_path`` to ``path``; an existing ``path`` is first moved aside to
    ``.<name>.old-<pid>`` (a folder cannot be renamed onto a non-empty one) and then deleted.
    Called under ``_folder_lock``, so no other writer's rename falls between the two."""
    if not (path.exists() or path.is_symlink()):
        os.replace(tmp_path, path)
        return
    if not overwrite:
        raise OutputExistsError(f"{path} was created by another writer meanwhile (pass ", Argument("overwrite", True),
                                " to replace it)")
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    _remove(old)  # an earlier process with our PID that was killed here
    os.replace(path, old)
    os.replace(tmp_path, path)
    _remove(old)


def read_json(path: str | os.PathLike, source: str | None = None, error: type[Exception] = ValueError) -> Any:
    """Parse a JSON file; anything that is not valid JSON raises ``error`` naming ``source``.

    The one JSON reader for files from outside (presets, artifact metadata): bytes that are not
    UTF-8, malformed JSON and absurdly deep nesting (``RecursionError`` inside ``json``) all end
    in ``error``, never in a ``json`` or interpreter exception.

    Args:
        path: the file.
        source: how messages name it (default: ``path``), e.g. the URL it came from.
        error: the exception type to raise (``PresetError`` for presets).

    Returns:
        The parsed value.

    Example:
        >>> config = read_json("preset/config.json", error=PresetError)
    """
    source = source or os.fspath(path)
    try:
        return json.loads(Path(path).read_bytes())
    except (UnicodeDecodeError, ValueError, RecursionError) as err:  # JSONDecodeError is a ValueError
        raise error(f"{source} is not valid JSON: {type(err).__name__}: {err}") from err


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()
