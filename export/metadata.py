"""The metadata JSON written beside every artifact, and the hashes it records.

For an artifact ``out/nin_cifar10.int8.tflite`` the metadata is ``out/nin_cifar10.int8.tflite.json``
(for a SavedModel folder ``out/nin_cifar10.savedmodel`` it is ``out/nin_cifar10.savedmodel.json``).
It holds the source model and its weights' sha256, the input and output spec, class names,
preprocessing, quantization, the parity report, and the artifact's sha256 and size.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from nin_keras.io_utils import atomic_write, read_json, sha256_file

SCHEMA_VERSION = 1


def metadata_path(artifact: str | os.PathLike) -> Path:
    """Where an artifact's metadata JSON lives: beside it, named ``<artifact name>.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def weights_sha256(model: keras.Model) -> str:
    """sha256 over a model's weights: each weight's path, dtype, shape and bytes, in model order.

    Independent of the file format the weights came from, so a preset loaded from ``.weights.h5``
    and the same weights set by hand give the same digest.
    """
    import keras  # on use: reading metadata (what deployment does) needs no Keras

    digest = hashlib.sha256()
    for variable in model.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(variable))
        digest.update(f"{variable.path}|{value.dtype.str}|{value.shape}|".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def artifact_digest(path: str | os.PathLike) -> dict[str, Any]:
    """sha256 and size in bytes of an artifact file, or of a folder (files in sorted path order,
    each hashed as its relative path followed by its own sha256)."""
    path = Path(path)
    if path.is_file():
        return {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    digest, size = hashlib.sha256(), 0
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(path).as_posix()}|{sha256_file(file)}\n".encode())
        size += file.stat().st_size
    return {"sha256": digest.hexdigest(), "bytes": size}


def write_metadata(artifact: str | os.PathLike, metadata: dict[str, Any]) -> Path:
    """Write ``metadata`` (JSON-ready) beside ``artifact`` atomically; return the JSON path."""
    path = metadata_path(artifact)
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps({"schema_version": SCHEMA_VERSION, **metadata}, indent=2,
                                  default=_json_default) + "\n")
    return path


def read_metadata(artifact: str | os.PathLike) -> dict[str, Any] | None:
    """The metadata beside ``artifact``, or ``None`` if there is none.

    Raises:
        ValueError: the JSON file exists but is not valid metadata.
    """
    path = metadata_path(artifact)
    if not path.is_file():
        return None
    metadata = read_json(path, f"metadata file {str(path)!r}")
    if not isinstance(metadata, dict) or "format" not in metadata:
        raise ValueError(f"metadata file {str(path)!r} has no 'format' entry")
    return metadata


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"metadata value of type {type(value).__name__} is not JSON-serializable")
