"""Quiet TensorFlow and its converters: their log output, hidden unless asked for.

Importing TensorFlow prints 5-7 lines on stderr before any work starts (oneDNN, ``cudart_stub``,
``cpu_feature_guard``, a ``cuInit`` *error* on a machine without a GPU driver). Setting
``TF_CPP_MIN_LOG_LEVEL`` does not remove them: TensorFlow logs through absl, and absl writes every
message issued before ``absl::InitializeLog()`` straight to stderr, whatever the level. So the
quiet import captures file descriptor 2 while TensorFlow loads and initialises its devices, drops
the lines that ``TF_CPP_MIN_LOG_LEVEL=2`` would have hidden (absl INFO/WARNING lines), plus the
"no CUDA driver" error, and writes everything else back to stderr. It happens at the first
``import tensorflow`` (an import hook), so a command that never needs TensorFlow never loads it.
``import nin_keras`` installs the hook, so the library is as quiet as the command line.

The converters and runtimes print too, from C++ and from Python: :func:`quiet_output` hides it
around each such call and shows it if the call fails. ``nin-keras --verbose`` (or
``$NIN_KERAS_VERBOSE=1``; :func:`set_verbose`) shows everything.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import os
import re
import sys
import tempfile
from typing import Iterator

#: Set to anything but "" or "0" (``nin-keras --verbose`` does), it shows what this module hides.
VERBOSE_ENV = "NIN_KERAS_VERBOSE"
# Whether quiet_tensorflow_import set TF_CPP_MIN_LOG_LEVEL (set_verbose(True) then unsets it).
_log_level_set_here = False

# Lines TensorFlow prints while it loads that say nothing the user has to act on.
_STARTUP_NOISE = (
    re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is called"),
    # absl's INFO and WARNING format ("I0000 00:00:1796192205.98 4948 port.cc:153] ..."):
    # what TF_CPP_MIN_LOG_LEVEL=2 hides once absl's logging is initialised.
    re.compile(r"^[IW]\d{4} \d\d:\d\d:\d\d"),
    # cpu_feature_guard's second line ("To enable the following instructions: AVX2 ...").
    re.compile(r"^To enable the following instructions: .*rebuild TensorFlow"),
    # The CPU is used when there is no CUDA driver; TensorFlow reports that as an error.
    re.compile(r"^E\d{4} \d\d:\d\d:\d\d.*\bcuInit\b"),
    # On a CPU with AVX-512 but no AVX512-FP16 (AMD Zen 4) the first float16 op, such as reading a
    # preset's float16 ZCA matrix, reports the Eigen fallback as an error; the results are the same.
    re.compile(r"^E\d{4} \d\d:\d\d:\d\d.*oneDNN supports DT_HALF only on platforms with AVX-512"),
)


def is_startup_noise(line: str) -> bool:
    """Whether ``line`` is one of TensorFlow's start-up log lines that the quiet import drops.

    Example:
        >>> is_startup_noise("I0000 00:00:1796.98 4948 cudart_stub.cc:31] Could not find cuda drivers")
        True
    """
    return any(pattern.search(line) for pattern in _STARTUP_NOISE)


@contextlib.contextmanager
def captured_output(fds: tuple[int, ...] = (1, 2)) -> Iterator[list[str]]:
    """Point file descriptors ``fds`` at one temporary file for the block; yield its lines.

    The one place that captures what C++ code prints (absl, the TFLite converter, LiteRT,
    TensorFlow Lite for Microcontrollers): it writes to the file descriptors, not to
    ``sys.stdout``/``sys.stderr``, so only ``os.dup2`` catches it. Python's streams are flushed
    on both sides, so what Python printed before and after goes where it belongs.

    Yields:
        A list that holds the captured lines (line ends kept) once the block ends, also when it
        raises.
    """
    lines: list[str] = []
    _flush()
    saved = [os.dup(fd) for fd in fds]
    with tempfile.TemporaryFile(mode="w+b") as captured:
        for fd in fds:
            os.dup2(captured.fileno(), fd)
        try:
            yield lines
        finally:
            _flush()
            for fd, copy in zip(fds, saved):
                os.dup2(copy, fd)
                os.close(copy)
            captured.seek(0)
            lines.extend(captured.read().decode("utf-8", errors="replace").splitlines(keepends=True))


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(ValueError, OSError):  # closed or detached by the caller
            stream.flush()


def _write_stderr(lines: list[str]) -> None:
    sys.stderr.write("".join(lines))
    sys.stderr.flush()


@contextlib.contextmanager
def _filtered_stderr() -> Iterator[None]:
    """Capture what C++ and Python write to file descriptor 2, then replay all but the noise."""
    lines: list[str] = []
    try:
        with captured_output((2,)) as lines:
            yield
    finally:
        _write_stderr([line for line in lines if not is_startup_noise(line)])


@contextlib.contextmanager
def without_noise() -> Iterator[None]:
    """Drop TensorFlow's log lines that ``is_startup_noise`` knows from what the block writes to
    file descriptor 2, and replay the rest (unless verbose: then nothing is touched).

    For the library's first float16 op, which cannot run at import (a multi-worker strategy must
    come before any op): reading a preset's float16 ZCA matrix on a CPU with AVX-512 but no
    AVX512-FP16 makes TensorFlow log, once per process, that oneDNN falls back to Eigen.
    """
    if is_verbose():
        yield
        return
    with _filtered_stderr():
        yield


@contextlib.contextmanager
def quiet_output(show_on_failure: bool = True) -> Iterator[None]:
    """Hide what a converter or runtime call prints, unless verbose; show it if the call fails.

    TFLite's converter (absl's ``trackable_obj`` warning, ``fully_quantize: 0, inference_type:
    6``, the ``tf.lite.Interpreter`` deprecation block), LiteRT (XNNPACK's INFO line), tf2onnx
    and ONNX Runtime's calibration (``Collecting tensor data and making histogram ...``) print
    progress and advice a user cannot act on. File descriptors 1 and 2 go to a temporary file
    for the call (:func:`captured_output`); when the call raises, that text is written to stderr
    before the error propagates, since it may say why; with :func:`is_verbose` nothing is
    captured.

    Args:
        show_on_failure: ``False`` where the caller reports the failure itself, in words.

    Example:
        >>> with quiet_output():
        ...     flatbuffer = converter.convert()
    """
    if is_verbose():
        yield
        return
    lines: list[str] = []
    try:
        with captured_output() as lines:
            yield
    except BaseException:
        if show_on_failure:
            _write_stderr(lines)
        raise


def is_verbose() -> bool:
    """Whether log output is shown: ``nin-keras --verbose``, or ``$NIN_KERAS_VERBOSE`` set to
    anything but ``""`` or ``"0"`` (processes started from here inherit it)."""
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def set_verbose(on: bool) -> None:
    """Show (``True``) or hide TensorFlow's start-up lines and converter output, in this process
    and the processes it starts. Takes effect on start-up lines only before TensorFlow loads."""
    global _log_level_set_here
    if on:
        os.environ[VERBOSE_ENV] = "1"
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _QuietFinder)]
        if _log_level_set_here:
            os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
            _log_level_set_here = False
    else:
        os.environ.pop(VERBOSE_ENV, None)
        quiet_tensorflow_import()


def quiet_tensorflow_import() -> None:
    """Make the first ``import tensorflow`` of this process drop TensorFlow's start-up lines.

    Nothing is imported now: a command that never needs TensorFlow (running an ONNX artifact,
    ``bench``'s subprocesses) never loads it. When something first imports ``tensorflow``, its
    module body and the device initialisation (``tf.config.list_physical_devices``, where the
    ``cuInit`` line comes from; it leaves device configuration open) run with file descriptor 2
    filtered. No op runs here: a ``MultiWorkerMirroredStrategy`` must be created before the
    first one. Also sets ``TF_CPP_MIN_LOG_LEVEL=2`` unless already set, for TensorFlow's later
    INFO and WARNING lines; errors still show. Anything else TensorFlow prints while loading, and
    the traceback if its import fails, still reaches stderr.

    Example:
        >>> quiet_tensorflow_import()   # in a command line's main, before any import of Keras
    """
    global _log_level_set_here
    if "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
        _log_level_set_here = True
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder())


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` with the other finders and wraps its loader in ``_QuietLoader``."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                spec.loader = _QuietLoader(spec.loader, self)
                return spec
        return None


class _QuietLoader(importlib.abc.Loader):
    """Runs the real loader's ``exec_module`` with stderr filtered; forwards everything else."""

    def __init__(self, loader, finder: _QuietFinder):
        self._loader, self._finder = loader, finder

    def __getattr__(self, name):  # get_resource_reader, is_package, get_data, ...
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        if self._finder in sys.meta_path:
            sys.meta_path.remove(self._finder)  # once: later imports are plain
        with _filtered_stderr():
            self._loader.exec_module(module)
            module.config.list_physical_devices()  # the cuInit line comes here, not at import
