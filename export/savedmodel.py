"""SavedModel export: a ``serving_default`` signature with a dynamic batch dimension."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from nin_keras.tensorflow_only import import_tensorflow

tf = import_tensorflow(__name__)

from nin_keras.export.runtime import INPUT_NAME, OUTPUT_NAME, Runner, batched
from nin_keras.export.serving import ServingModule


def write_savedmodel(module: ServingModule, path: str | os.PathLike) -> None:
    """Save ``module`` as a SavedModel folder at ``path`` (which must not exist yet).

    The folder has one signature, ``serving_default``: ``images float32 [None, H, W, C]`` ->
    ``probabilities float32 [None, classes]``. Callers that want an atomic write pass a temporary
    folder (see :func:`nin_keras.io_utils.atomic_dir`).
    """
    tf.saved_model.save(module, str(path),
                        signatures={"serving_default": module.concrete_function()})


def load_savedmodel(path: str | os.PathLike, batch_size: int = 64) -> Runner:
    """Load a SavedModel folder's ``serving_default`` signature as a NumPy function.

    Args:
        path: the SavedModel folder.
        batch_size: larger inputs are run in chunks of this size.

    Returns:
        ``run(images float32 [N, H, W, C]) -> probabilities float32 [N, classes]``.
    """
    if not (Path(path) / "saved_model.pb").is_file():
        raise ValueError(f"path {str(path)!r} is not a SavedModel folder (no saved_model.pb)")
    loaded = tf.saved_model.load(str(path))
    signature = loaded.signatures["serving_default"]

    def run_chunk(images: np.ndarray) -> np.ndarray:
        return signature(**{INPUT_NAME: tf.constant(images, tf.float32)})[OUTPUT_NAME].numpy()

    def run(images: np.ndarray) -> np.ndarray:
        return batched(run_chunk, images, batch_size)

    run.loaded = loaded  # keep the trackable (and its variables) alive with the function
    return run
