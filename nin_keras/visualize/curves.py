"""Training curves from a run's metrics file (``metrics.csv`` or ``metrics.json``).

The files are those ``nin_keras.train`` writes, one row per epoch (``epoch``, ``loss``,
``accuracy``, ``val_loss``, ``val_accuracy``, ``learning_rate``, ...); the drawing is the training
loop's own :func:`nin_keras.train.history.plot_history`, so a redrawn figure matches the one
written during training.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from nin_keras.errors import DataError
from nin_keras.train.history import plot_history
from nin_keras.visualize import rendering


def load_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read per-epoch metrics from a CSV (header row) or JSON file.

    JSON may be ``{"history": [rows]}`` (what training writes), a list of rows, or Keras's
    ``History.history`` layout ``{"loss": [...], ...}``. Numeric strings become floats; empty
    CSV cells are dropped from their row; an ``lr`` column is renamed ``learning_rate``.

    Returns:
        One dict per epoch, each with an ``epoch`` key (numbered from 1 when the file has none).

    Raises:
        DataError: the file is missing, unreadable, or holds no rows.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"metrics file {path} does not exist")
    try:
        if path.suffix.lower() == ".json":
            rows = _json_rows(json.loads(path.read_text()))
        else:
            with open(path, newline="") as f:
                rows = [{k: _number(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]
    except (ValueError, csv.Error) as err:
        raise DataError(f"metrics file {path} cannot be read: {err}") from err
    if not rows:
        raise DataError(f"metrics file {path} holds no epochs")
    # Keras 2's CSVLogger and History called the learning rate "lr".
    rows = [{("learning_rate" if k == "lr" else k): v for k, v in row.items()} for row in rows]
    return [{"epoch": i, **row} for i, row in enumerate(rows, start=1)]


def _json_rows(data: Any) -> list[dict[str, Any]]:
    if isinstance(data, Mapping) and "history" in data:
        data = data["history"]
    if isinstance(data, Mapping):  # column layout: {"loss": [...], "val_loss": [...]}
        length = min(len(values) for values in data.values())
        return [{k: values[i] for k, values in data.items()} for i in range(length)]
    if isinstance(data, list) and all(isinstance(row, Mapping) for row in data):
        return [dict(row) for row in data]
    raise ValueError("expected a list of per-epoch rows, {'history': [...]}, or {metric: [values]}")


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def plot_training_curves(
    metrics: str | os.PathLike | Sequence[Mapping[str, Any]], path: str | os.PathLike | None = None
) -> Path:
    """Draw loss, error rate and learning rate against epoch (1200 × 360 pixels).

    Args:
        metrics: a metrics file (see :func:`load_metrics`) or the rows themselves.
        path: a ``.png`` file, or a folder for the file ``curves.png``; default the folder
            ``nin_keras_visualize``.

    Returns:
        The path written.

    Example:
        >>> plot_training_curves("runs/nin_cifar10/metrics.csv")
        PosixPath('nin_keras_visualize/curves.png')
    """
    rows = load_metrics(metrics) if isinstance(metrics, (str, os.PathLike)) else list(metrics)
    out = rendering.output_path(path, "curves.png")
    plot_history(rows, out)
    return out
