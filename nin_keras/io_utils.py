"""Atomic file and folder writes: a failed write leaves nothing half-written behind."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + path.suffix, dir=path.parent)
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


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success move it into place as ``path``.

    With ``overwrite=True`` an existing ``path`` is replaced only after the new folder is complete.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists (pass overwrite=True to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
    os.chmod(tmp_path, 0o777 & ~_UMASK)
    try:
        yield tmp_path
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp_path, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            shutil.rmtree(tmp_path, ignore_errors=True)


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()
