"""TensorFlow's start-up log lines, silenced for the command line.

Importing TensorFlow prints 5-7 lines on stderr before any work starts (oneDNN, ``cudart_stub``,
``cpu_feature_guard``, a ``cuInit`` *error* on a machine without a GPU driver). Setting
``TF_CPP_MIN_LOG_LEVEL`` does not remove them: TensorFlow logs through absl, and absl writes every
message issued before ``absl::InitializeLog()`` straight to stderr, whatever the level. So the
quiet import captures file descriptor 2 while TensorFlow loads and initialises its devices, drops
the lines that ``TF_CPP_MIN_LOG_LEVEL=2`` would have hidden (absl INFO/WARNING lines), plus the
"no CUDA driver" error, and writes everything else back to stderr.
"""

from __future__ import annotations

import contextlib
import importlib.util
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


def import_tensorflow_quietly() -> None:
    """Import TensorFlow and initialise its devices without its start-up log lines.

    Sets ``TF_CPP_MIN_LOG_LEVEL=2`` (unless already set) so TensorFlow's later INFO and WARNING
    lines stay hidden too; errors still show. Does nothing but set the variable when TensorFlow
    is not installed (the JAX backend needs none of it). Anything else TensorFlow prints while
    loading, and the traceback if the import fails, still reaches stderr.

    Example:
        >>> import_tensorflow_quietly()   # before the first TensorFlow or Keras import
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if importlib.util.find_spec("tensorflow") is None:
        return
    with _filtered_stderr():
        import tensorflow as tf

        tf.config.list_physical_devices()  # the cuInit line comes here, not at import
