"""Training checkpoints: every variable of the model and optimizer plus the loop state, one file.

A checkpoint is a single ``.npz`` written through ``atomic_write``: the new file appears under
its final name only once complete, so a process killed mid-write leaves the previous
checkpoint intact. It holds

- ``model/NNNN``: every model variable, trainable or not, in ``model.variables`` order
  (weights, batch-norm statistics and the dropout seed-generator states, so a resumed run
  draws the same dropout masks as an uninterrupted one);
- ``optimizer/NNNN``: every optimizer variable (iteration counter, learning rate, momentum
  slots, loss-scale state);
- ``ema/NNNN``: the weight average's counter and shadow variables, when the run keeps one
  (``nin_keras.train.ema.WeightAverage``);
- ``model_paths`` / ``optimizer_paths`` / ``ema_paths``: the variable paths, named in error messages;
- ``state``: a JSON string with the loop's position (epoch, step), schedule state, partial
  epoch metrics and history.

Under a distribution strategy the variables are mirrored; reading gives the (identical)
replica value and ``assign`` in cross-replica context writes every replica.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import keras
import numpy as np

from nin_keras.errors import CheckpointError
from nin_keras.io_utils import atomic_write


def _values(variables: list) -> list[np.ndarray]:
    return [np.asarray(keras.ops.convert_to_numpy(v.value)) for v in variables]


def _groups(model, optimizer, extra: Mapping[str, Sequence] | None) -> list[tuple[str, Sequence]]:
    return [("model", model.variables), ("optimizer", optimizer.variables), *(extra or {}).items()]


def save_checkpoint(
    path: str | os.PathLike,
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    state: dict[str, Any],
    extra: Mapping[str, Sequence] | None = None,
) -> Path:
    """Write model, optimizer, ``extra`` variable groups and loop ``state`` to ``path`` atomically.

    Args:
        path: destination ``.npz`` file.
        model: the model being trained.
        optimizer: its optimizer, already built.
        state: JSON-serializable loop state.
        extra: more named groups of variables (``{"ema": average.variables}``).

    Returns:
        The path written.
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    for prefix, variables in _groups(model, optimizer, extra):
        for i, value in enumerate(_values(variables)):
            arrays[f"{prefix}/{i:04d}"] = value
        arrays[f"{prefix}_paths"] = np.array([v.path for v in variables])
    arrays["state"] = np.array(json.dumps(state))
    with atomic_write(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    return path


def load_checkpoint(
    path: str | os.PathLike,
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    extra: Mapping[str, Sequence] | None = None,
) -> dict[str, Any]:
    """Assign a checkpoint's values to ``model``, ``optimizer`` and the ``extra`` groups; return
    its loop state.

    Raises:
        CheckpointError: the file is unreadable, or its variables do not match in number or shape
            (the message names the first mismatching variable).
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e}") from e
    try:
        state = json.loads(str(_entry(arrays, "state", path)))
    except (json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(f"checkpoint {path}: its loop state is not valid JSON ({e})") from None
    # Variables are matched by position and shape: auto-generated names (``seed_generator_3``)
    # depend on how many layers the process created before, so paths are only reported.
    # Every shape is checked before the first assignment, so a mismatch leaves the model as it was.
    assignments = []
    for prefix, variables in _groups(model, optimizer, extra):
        saved = [str(p) for p in arrays.get(f"{prefix}_paths", [])]
        if len(saved) != len(variables):
            raise CheckpointError(
                f"checkpoint {path} holds {len(saved)} {prefix} variables, this {prefix} has {len(variables)}"
            )
        for i, variable in enumerate(variables):
            value = _entry(arrays, f"{prefix}/{i:04d}", path)
            if tuple(value.shape) != tuple(variable.shape):
                raise CheckpointError(
                    f"checkpoint {path}: {prefix} variable {variable.path} (saved as {saved[i]}) has shape "
                    f"{tuple(variable.shape)}, the checkpoint {tuple(value.shape)}"
                )
            assignments.append((variable, value))
    for variable, value in assignments:
        variable.assign(value)
    return state


def read_state(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint's loop state alone (what a run needs to know before building its optimizer).

    Raises:
        CheckpointError: the file is unreadable or has no valid state.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            text = str(_entry({"state": data["state"]} if "state" in data.files else {}, "state", path))
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e}") from e
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(f"checkpoint {path}: its loop state is not valid JSON ({e})") from None


def _entry(arrays: Mapping[str, np.ndarray], key: str, path: Path) -> np.ndarray:
    if key not in arrays:
        raise CheckpointError(f"checkpoint {path} has no {key!r} entry (not written by nin-keras, or damaged)")
    return arrays[key]


def weights_digest(model: keras.Model, extra_variables: Sequence = ()) -> str:
    """sha256 over the bytes of every model variable (and of ``extra_variables``, such as a
    weight average's): equal digests mean identical weights."""
    digest = hashlib.sha256()
    for value in _values([*model.variables, *extra_variables]):
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()
