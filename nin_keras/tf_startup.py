"""TensorFlow's start-up log lines, silenced for the command line.

Importing TensorFlow prints 5-7 lines on stderr before any work starts (oneDNN, ``cudart_stub``,
``cpu_feature_guard``, a ``cuInit`` *error* on a machine without a GPU driver). Setting
``TF_CPP_MIN_LOG_LEVEL`` does not remove them: TensorFlow logs through absl, and absl writes every
message issued before ``absl::InitializeLog()`` straight to stderr, whatever the level. So the
quiet import captures file descriptor 2 while TensorFlow loads and initialises its devices, drops
the lines that ``TF_CPP_MIN_LOG_LEVEL=2`` would have hidden (absl INFO/WARNING lines), plus the
"no CUDA driver" error, and writes everything else back to stderr. It happens at the first
``import tensorflow`` (an import hook), so a command that never needs TensorFlow never loads it.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import os
import re
import sys
import tempfile
from typing import Iterator

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
)


def is_startup_noise(line: str) -> bool:
    """Whether ``line`` is one of TensorFlow's start-up log lines that the quiet import drops.

    Example:
        >>> is_startup_noise("I0000 00:00:1796.98 4948 cudart_stub.cc:31] Could not find cuda drivers")
        True
    """
    return any(pattern.search(line) for pattern in _STARTUP_NOISE)


@contextlib.contextmanager
def _filtered_stderr() -> Iterator[None]:
    """Capture what C++ and Python write to file descriptor 2, then replay all but the noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines(keepends=True) if not is_startup_noise(line)]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()


def quiet_tensorflow_import() -> None:
    """Make the first ``import tensorflow`` of this process drop TensorFlow's start-up lines.

    Nothing is imported now: a command that never needs TensorFlow (running an ONNX artifact,
    ``bench``'s subprocesses) never loads it. When something first imports ``tensorflow``, its
    module body and the device initialisation (``tf.config.list_physical_devices``, where the
    ``cuInit`` line comes from; it leaves device configuration open) run with file descriptor 2
    filtered. Also sets ``TF_CPP_MIN_LOG_LEVEL=2`` unless already set, for TensorFlow's later
    INFO and WARNING lines; errors still show. Anything else TensorFlow prints while loading, and
    the traceback if its import fails, still reaches stderr.

    Example:
        >>> quiet_tensorflow_import()   # in a command line's main, before any import of Keras
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
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
