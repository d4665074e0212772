"""Fetch, cache and verify weight files (``keras.utils.get_file``-style, with a mirror and offline mode).

Where a registered preset's files come from, in this order:

1. **Bundled**: ``zoo/weights/<preset>/`` beside this module. In a checkout (and an editable
   install) it holds every published file; the wheel ships only each preset's ``config.json`` and
   ``metadata.json`` (with ``index.json``, the trust anchor), not the weights files. Used as it is
   when every file's sha256 matches the registry.
2. **Cache**: ``<cache>/<preset>/<file>``, where ``<cache>`` is ``$NIN_KERAS_HOME``, else
   ``$KERAS_HOME/nin_keras``, else ``~/.keras/nin_keras``. A cached file whose sha256 does not match
   is treated as corrupt, deleted and fetched again. A preset whose bundled folder is incomplete
   (an installed wheel) is assembled here: its verified bundled files are copied, the rest fetched.
3. **Download**: ``$NIN_KERAS_MIRROR/<preset>/<file>`` first (any ``http://``, ``https://`` or
   ``file://`` base URL), then the registry's own URLs. This project has **no public weight host**:
   the registry lists no URLs, so without bundled files a download needs ``NIN_KERAS_MIRROR``
   (a checkout's ``zoo/weights/`` folder, served or as a ``file://`` URL, is such a mirror).

``NIN_KERAS_OFFLINE=1`` forbids step 3: nothing touches the network and a file that is neither
bundled nor cached raises ``DownloadError`` saying where it was looked for.

Downloads go to a temporary file beside the target, are checked against the expected sha256 and
only then renamed into place, under a cross-process lock (``<file>.lock``): two processes fetching
the same file end with one verified copy. Three bounds keep a hostile or broken server from
holding the process or filling the disk: ``timeout`` per network operation (connect, each read),
so a server that stalls raises ``DownloadError``; ``deadline`` for a whole transfer, so one that
drips a few bytes at a time does too; and ``max_bytes``, the file's size as the registry lists it
(``DEFAULT_MAX_BYTES`` when unknown), beyond which the transfer stops at once.
"""

from __future__ import annotations

import dataclasses
import http.client
import os
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import filelock

from nin_keras import __version__
from nin_keras.errors import DownloadError, HashMismatchError, NinKerasError
from nin_keras.io_utils import atomic_write, remove_orphaned_temporaries, sha256_file

ENV_HOME = "NIN_KERAS_HOME"
ENV_MIRROR = "NIN_KERAS_MIRROR"
ENV_OFFLINE = "NIN_KERAS_OFFLINE"
DEFAULT_TIMEOUT = 30.0
#: Seconds one transfer may take in total (a 20 MB preset file needs 34 kB/s to make it).
DEFAULT_DEADLINE = 600.0
#: Largest file fetched when its size is not known in advance (the registry lists every
#: published file's size; this bounds the rest, e.g. a URL preset's own files).
DEFAULT_MAX_BYTES = 1 << 30
# Waiting for another process's download of the same file: generous, it may be a large file.
LOCK_TIMEOUT = 600.0
BUNDLED_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
_CHUNK = 1 << 16


def default_cache_dir() -> Path:
    """The download cache: ``$NIN_KERAS_HOME``, else ``$KERAS_HOME/nin_keras``, else ``~/.keras/nin_keras``."""
    if os.environ.get(ENV_HOME):
        return Path(os.environ[ENV_HOME]).expanduser()
    keras_home = os.environ.get("KERAS_HOME") or os.path.join("~", ".keras")
    return Path(keras_home).expanduser() / "nin_keras"


def is_offline() -> bool:
    """True when ``$NIN_KERAS_OFFLINE`` is set to 1/true/yes/on (case-insensitive)."""
    return os.environ.get(ENV_OFFLINE, "").strip().lower() in {"1", "true", "yes", "on"}


def mirror_urls(file_name: str) -> list[str]:
    """URLs of ``file_name`` under each base in ``$NIN_KERAS_MIRROR`` (comma or space separated)."""
    bases = os.environ.get(ENV_MIRROR, "").replace(",", " ").split()
    return [join_url(base, file_name) for base in bases]


def join_url(base: str, file_name: str) -> str:
    """``base`` + ``/`` + ``file_name`` with each path part percent-quoted."""
    quoted = "/".join(urllib.parse.quote(part) for part in PurePosixPath(file_name).parts)
    return base.rstrip("/") + "/" + quoted


def _relative_path(file_name: str) -> PurePosixPath:
    if not isinstance(file_name, str) or any(part in ("", ".", "..") for part in file_name.split("/")):
        raise ValueError(f"`file_name` must be a relative '/'-separated path without '.' or '..', got {file_name!r}.")
    return PurePosixPath(file_name)


def fetch(
    file_name: str,
    sha256: str | None,
    urls: Sequence[str] = (),
    cache_dir: str | os.PathLike | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    offline: bool | None = None,
    mirror: bool = True,
    max_bytes: int | None = None,
    deadline: float = DEFAULT_DEADLINE,
    validate: Callable[[Path], Any] | None = None,
    local: Path | None = None,
) -> Path:
    """Return the path of a verified local copy of ``file_name``, downloading it if needed.

    Args:
        file_name: path relative to the cache (and to the mirror), e.g.
            ``"nin_mnist.v1/model.weights.h5"``.
        sha256: expected hex sha256. ``None`` skips the hash check (used only for the config and
            metadata of presets loaded from a bare URL, which no registry vouches for: they come
            with ``validate`` instead).
        urls: full URLs of the file, tried after ``$NIN_KERAS_MIRROR``'s.
        cache_dir: cache root; default ``default_cache_dir()``.
        timeout: seconds allowed for each network operation.
        offline: never use the network; default from ``$NIN_KERAS_OFFLINE``.
        mirror: try ``$NIN_KERAS_MIRROR`` first (off for files whose path only means something
            in the cache, such as presets loaded from a URL).
        max_bytes: the most bytes the file may have (its listed size); a server announcing or
            sending more is cut off. Default ``DEFAULT_MAX_BYTES``.
        deadline: seconds one transfer may take in total, however steadily bytes arrive.
        validate: a check of the file's content, for files no hash vouches for: called on each
            download before it enters the cache and on a cached copy before it is returned.
            Raising a ``NinKerasError`` rejects the file: a rejected cached copy is deleted and
            fetched again, a rejected download never enters the cache.
        local: a copy of the file on this machine (the package's bundled one), copied into the
            cache instead of a download when it verifies; offline mode allows it.

    Returns:
        Path of the cached file (``<cache_dir>/<file_name>``).

    Raises:
        HashMismatchError: every download attempt gave a file with the wrong sha256 (the message
            names the file, the expected and the actual hash).
        DownloadError: offline and not cached, no URL to try, or every URL failed (HTTP error,
            truncated body, timeout, deadline, too large); the message lists each URL's failure.
        NinKerasError: the type ``validate`` raised, when it rejected every download.

    Example:
        >>> path = fetch("nin_mnist.v1/model.weights.h5", "3f5a…", ["https://example.org/nin_mnist.v1/model.weights.h5"])
    """
    relative = _relative_path(file_name)
    if sha256 is not None:
        sha256 = sha256.lower()
    max_bytes = DEFAULT_MAX_BYTES if max_bytes is None else max_bytes
    offline = is_offline() if offline is None else offline
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = root.joinpath(*relative.parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(target) + ".lock", timeout=LOCK_TIMEOUT):
        # Every writer holds this lock, so temporaries found now belong to killed processes.
        remove_orphaned_temporaries(target)
        if target.is_file():
            problem = _rejection(target, sha256, validate)
            if problem is None:
                return target
            warnings.warn(f"Cached {target} is corrupt ({problem}); fetching it again.", stacklevel=2)
            target.unlink()
        if local is not None and _rejection(local, sha256, validate) is None:
            with atomic_write(target) as tmp:
                shutil.copyfile(local, tmp)
            return target
        if offline:
            raise DownloadError(
                f"{file_name} is not in the cache ({target}) and offline mode is on "
                f"(${ENV_OFFLINE}); unset it or put a verified copy there."
            )
        candidates = [*(mirror_urls(str(relative)) if mirror else []), *urls]
        if not candidates:
            raise DownloadError(
                f"No URL to download {file_name} from: this project has no public weight host. Set "
                f"${ENV_MIRROR} to a base URL (http://, https:// or file://) serving <base>/{relative} "
                f"(a checkout's zoo/weights folder is laid out so; the pip-installed package carries "
                f"the weights' hashes, not the weights files)."
            )
        limits = _Limits(timeout, deadline, max_bytes)
        return _download_first(candidates, target, str(relative), sha256, limits, validate)


def _rejection(path: Path, sha256: str | None, validate: Callable[[Path], Any] | None) -> str | None:
    """Why the file at ``path`` is not the one wanted (wrong hash, invalid content), or None."""
    if sha256 is not None:
        actual = sha256_file(path)
        if actual != sha256:
            return f"sha256 {actual}, expected {sha256}"
    if validate is not None:
        try:
            validate(path)
        except NinKerasError as err:
            return str(err)
    return None


@dataclasses.dataclass(frozen=True)
class _Limits:
    """The bounds of one transfer: per-read ``timeout``, total ``deadline``, ``max_bytes``."""

    timeout: float
    deadline: float
    max_bytes: int


def _download_first(urls: Sequence[str], target: Path, file_name: str, sha256: str | None, limits: _Limits,
                    validate: Callable[[Path], Any] | None) -> Path:
    """Try each URL in turn; the first verified download is renamed onto ``target``."""
    failures: list[str] = []
    rejected: NinKerasError | None = None
    for url in urls:
        try:
            with atomic_write(target) as tmp:
                _download(url, tmp, limits)
                actual = sha256_file(tmp)
                if sha256 is not None and actual != sha256:
                    raise HashMismatchError(
                        f"sha256 mismatch for {file_name} from {url}: expected {sha256}, got {actual}."
                    )
                if validate is not None:
                    validate(tmp)
            return target
        except DownloadError as err:
            if isinstance(err, HashMismatchError):
                rejected = err
            failures.append(str(err))
        except NinKerasError as err:  # validate rejected the content
            rejected = err
            failures.append(f"{url}: {err}")
    details = "\n  ".join(failures)
    error = type(rejected) if rejected is not None else DownloadError
    raise error(f"Could not download a verified {file_name}. Attempts:\n  {details}")


def _download(url: str, dest: Path, limits: _Limits) -> None:
    """Stream ``url`` into ``dest``; an HTTP error, short or oversized body, timeout or passed
    deadline raises ``DownloadError``."""
    request = urllib.request.Request(url, headers={"User-Agent": f"nin-keras/{__version__}"})
    print(f"Downloading {url}", file=sys.stderr)
    received = 0
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=limits.timeout) as response, open(dest, "wb") as out:
            length = response.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            if expected is not None and expected > limits.max_bytes:
                raise DownloadError(f"{url}: the server announces {expected} bytes, more than the "
                                    f"{limits.max_bytes} expected; not downloading it")
            # read1 returns whatever has arrived, so the deadline is checked after every read
            # even when a server drips a few bytes at a time.
            while chunk := response.read1(_CHUNK):
                received += len(chunk)
                if received > limits.max_bytes:
                    raise DownloadError(f"{url}: the body exceeds the {limits.max_bytes} bytes expected; stopped")
                out.write(chunk)
                elapsed = time.monotonic() - started
                if elapsed > limits.deadline:
                    raise DownloadError(f"{url}: still downloading after {elapsed:.1f} s ({received} bytes), "
                                        f"past the {limits.deadline:g} s deadline")
    except urllib.error.HTTPError as err:
        raise DownloadError(f"{url}: HTTP {err.code} {err.reason}") from err
    except http.client.IncompleteRead as err:
        raise DownloadError(f"{url}: truncated body ({received + len(err.partial)} bytes, connection closed early)") from err
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        # TimeoutError and socket errors are OSErrors; URLError wraps connection failures.
        reason = getattr(err, "reason", None) or err
        raise DownloadError(f"{url}: {type(reason).__name__}: {reason} (after {received} bytes)") from err
    if expected is not None and received != expected:
        raise DownloadError(f"{url}: truncated body ({received} of {expected} bytes)")


def resolve_files(
    preset: str,
    files: Mapping[str, str],
    urls: Sequence[str] = (),
    *,
    cache_dir: str | os.PathLike | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    offline: bool | None = None,
    sizes: Mapping[str, int] | None = None,
) -> Path:
    """Return a folder holding every file of a registered preset, each verified against ``files``.

    Follows the module's resolution order: the bundled folder if all its files verify; else the
    cache, where the bundled files that verify are copied and the rest are downloaded (the mirror,
    then ``urls``). Missing bundled files are expected (the wheel ships no weights files); altered
    ones are warned about.

    Args:
        preset: preset name, e.g. ``"nin_mnist.v1"``: the folder name in every location.
        files: file name -> expected sha256.
        urls: base URLs of the preset's folder (the file name is appended).
        cache_dir, timeout, offline: as in ``fetch``.
        sizes: file name -> size in bytes as the registry lists it: the most a download of that
            file may send (``fetch``'s ``max_bytes``).
    """
    if not files:
        raise ValueError(f"`files` of preset {preset!r} is empty.")
    bundled = BUNDLED_WEIGHTS_DIR / preset
    good = {name for name, digest in files.items() if _verified(bundled / name, digest)}
    if len(good) == len(files):
        return bundled
    altered = [name for name in files if name not in good and (bundled / name).exists()]
    if altered:
        warnings.warn(f"Bundled preset {bundled} has altered files {altered}; using the cache instead.", stacklevel=2)
    sizes = sizes or {}
    paths = [
        fetch(f"{preset}/{name}", digest, [join_url(base, name) for base in urls], cache_dir, timeout=timeout,
              offline=offline, max_bytes=sizes.get(name), local=bundled / name if name in good else None)
        for name, digest in files.items()
    ]
    return paths[0].parent


def _verified(path: Path, sha256: str) -> bool:
    return path.is_file() and sha256_file(path) == sha256.lower()
