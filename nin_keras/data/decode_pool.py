"""Decoding many image files in worker processes: the host side of the input for every backend.

Class-folder sets (``nin_keras.data.image_folder``: ``eval --data FOLDER``, ``finetune``, the CIFAR
JPEG copy) are decoded here, each file through the one input policy (or at its own size without
one), in chunks of files spread over ``workers`` processes. The result is the single-process one,
byte for byte and in the same order: a worker runs the same function on the same bytes, and the
chunks are collected in the order they were read. An image a worker cannot decode comes back as
the ``ImageError`` naming the file, as in one process, so the caller lists every bad file.

Nothing here needs TensorFlow or Keras, in the parent or in a worker (only NumPy and Pillow), so
the JAX backend reads image folders without TensorFlow; ``tf.data`` stays the TensorFlow pipeline's.

Workers are started with ``forkserver`` (``spawn`` where the platform has no ``forkserver``),
never ``fork``: forking a process in which JAX or TensorFlow has started its thread pools can
deadlock the child. A worker so started imports the script that started it (Python's rule for
these start methods): the ``nin-keras`` command's is light, but a script importing TensorFlow at
its top has workers that import it too (``benchmarks/decode.py`` is its own script for that
reason), and, as with every ``multiprocessing`` program, a script that decodes with
``workers > 1`` needs the ``if __name__ == "__main__":`` guard. ``workers=1`` decodes in the
calling process and starts nothing.
"""

from __future__ import annotations

import collections
import itertools
import multiprocessing
import os
from multiprocessing import forkserver
from collections.abc import Hashable, Iterable, Iterator
from typing import Union
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from nin_keras.arguments import check_count
from nin_keras.data.image_decode import decode_image
from nin_keras.data.input_policy import InputPolicy
from nin_keras.errors import DataError, ImageError

#: The most workers the default starts: the parent reads the folder or archive in one stream and
#: gathers the arrays, so on a many-core machine more workers mostly wait for it, each holding its
#: own interpreter with NumPy and Pillow.
MAX_DEFAULT_WORKERS = 8
#: A chunk (one task of a worker) ends at this many files or, for large photos, at this many bytes
#: read: small files amortize the cost of a task, large ones still spread over the workers.
CHUNK_FILES = 128
CHUNK_BYTES = 4 << 20
#: Chunks in flight per worker: enough to keep every worker busy while the parent reads, few
#: enough that the files read ahead stay a few chunks' worth of memory.
_AHEAD = 2

#: What decoding one file gives: its array, or the error naming it.
Result = Union[np.ndarray, ImageError]


def default_workers() -> int:
    """The CPUs this process may run on (``os.sched_getaffinity``, else ``os.cpu_count()``), at
    most :data:`MAX_DEFAULT_WORKERS`."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        usable = os.cpu_count() or 1
    return max(1, min(usable, MAX_DEFAULT_WORKERS))


def resolve_workers(workers: int | None) -> int:
    """``workers``, or :func:`default_workers` for ``None``; ``ValueError`` naming ``workers``
    for anything but a whole number >= 1 (0 does not mean "the default")."""
    if workers is None:
        return default_workers()
    check_count(workers, "workers")
    return int(workers)


def decode_one(data: bytes, name: str, policy: InputPolicy | None) -> np.ndarray:
    """One image file's ``uint8 (H, W, C)`` array: through ``policy``, or without one at the file's
    own size (grayscale files as one channel, everything else RGB). ``ImageError`` names ``name``."""
    if policy is not None:
        return policy(data, name)
    array = np.asarray(decode_image(data, name=name), dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array


def _decode_chunk(policy: InputPolicy | None, files: list[tuple[bytes, str]]) -> list[Result]:
    """What a worker runs: each file's array, or the ``ImageError`` it raised (returned, so that
    one bad file does not hide the others)."""
    results: list = []
    for data, name in files:
        try:
            results.append(decode_one(data, name, policy))
        except ImageError as error:
            results.append(error)
    return results


def decode_files(files: Iterable[tuple[Hashable, bytes, str]], policy: InputPolicy | None,
                 workers: int | None = None) -> Iterator[tuple[Hashable, Result]]:
    """Decode ``(key, file bytes, name)`` items; yield ``(key, array or ImageError)`` in their order.

    ``files`` is read lazily (an archive streams through), at most a few chunks ahead of what has
    been yielded. A set that fits in one chunk is decoded in this process: starting workers would
    cost more than it saves.

    Args:
        files: the images; ``key`` stays in this process (the caller's label or place), ``name``
            is how an error names the file.
        policy: the input policy, or ``None`` for each file at its own size (:func:`decode_one`).
        workers: processes decoding at once; ``None``: :func:`default_workers`; ``1``: this process.

    Raises:
        ValueError: ``workers`` is not a whole number >= 1.
        DataError: a worker process died (killed, out of memory, or a script without the
            ``__main__`` guard), naming the files it was decoding.
    """
    workers = resolve_workers(workers)
    chunks = _chunks(files)
    opening = list(itertools.islice(chunks, 2))
    if workers == 1 or len(opening) < 2:
        for chunk in itertools.chain(opening, chunks):
            yield from zip((key for key, _ in chunk), _decode_chunk(policy, [file for _, file in chunk]))
        return
    pool = ProcessPoolExecutor(workers, mp_context=_start_context())
    try:
        pending: collections.deque[tuple[list, Future]] = collections.deque()
        for chunk in itertools.chain(opening, chunks):
            pending.append((chunk, pool.submit(_decode_chunk, policy, [file for _, file in chunk])))
            if len(pending) >= _AHEAD * workers:
                yield from _gathered(*pending.popleft())
        while pending:
            yield from _gathered(*pending.popleft())
    finally:
        # On an error (a corrupt archive, a dead worker) or an abandoned generator, nothing
        # queued is decoded for nobody.
        pool.shutdown(wait=True, cancel_futures=True)


def _chunks(files: Iterable[tuple[Hashable, bytes, str]]) -> Iterator[list[tuple[Hashable, tuple[bytes, str]]]]:
    chunk: list = []
    size = 0
    for key, data, name in files:
        chunk.append((key, (data, name)))
        size += len(data)
        if len(chunk) >= CHUNK_FILES or size >= CHUNK_BYTES:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _gathered(chunk: list, future: Future) -> Iterator[tuple[Hashable, Result]]:
    try:
        results = future.result()
    except BrokenProcessPool as error:
        names = [name for _, (_, name) in chunk]
        raise DataError(f"a decoding worker process stopped while decoding {len(names)} file(s), {names[0]} "
                        f"... {names[-1]} ({error}); a script that decodes in worker processes needs the "
                        "`if __name__ == '__main__':` guard, and workers=1 decodes in this process") from error
    yield from zip((key for key, _ in chunk), results)


def _start_context() -> multiprocessing.context.BaseContext:
    """``forkserver`` where the platform has it, else ``spawn``: never ``fork`` (see the module docstring).

    The fork server imports this module (NumPy, Pillow, the input policy) once, so that each pool's
    workers start without importing them again: 0.25 s instead of 1 s for two workers on a shared
    2-core CPU. The modules others asked it to preload stay in its list.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    preloaded = list(getattr(forkserver._forkserver, "_preload_modules", ["__main__"]))
    if __name__ not in preloaded:
        context.set_forkserver_preload([*preloaded, __name__])
    return context
