"""Per-epoch metrics on disk: ``metrics.csv``, ``metrics.json``, ``curves.png`` and
``time_to_accuracy.png``.

The history is a list of flat dicts, one per finished epoch (``epoch``, ``loss``, ``accuracy``,
``val_loss``, ``val_accuracy``, ``learning_rate``, ``seconds``, ...). All three files are
rewritten from the whole history after every epoch, each through ``atomic_write``, so they
always agree with the last checkpoint.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from nin_keras.io_utils import atomic_write


def write_history(
    out_dir: str | os.PathLike, history: Sequence[Mapping[str, Any]], extra: Mapping[str, Any] | None = None
) -> None:
    """Write ``metrics.csv``, ``metrics.json`` (history plus ``extra``), ``curves.png`` and,
    when the epochs record validation accuracy and time, ``time_to_accuracy.png``.

    Args:
        out_dir: folder to write into.
        history: one dict per epoch.
        extra: more top-level keys for ``metrics.json`` (recipe, command, test metrics); a
            recipe's paper error becomes the target line of the time-to-accuracy plot.
    """
    out_dir = Path(out_dir)
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    with atomic_write(out_dir / "metrics.csv") as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(history)
    with atomic_write(out_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps({**(extra or {}), "history": list(history)}, indent=2) + "\n")
    if history:
        plot_history(history, out_dir / "curves.png")
    if history and all("val_accuracy" in row and "seconds" in row for row in history):
        paper = ((extra or {}).get("recipe") or {}).get("paper") or {}
        target = None if paper.get("test_error") is None else 100.0 - paper["test_error"]
        plot_time_to_accuracy(history, out_dir / "time_to_accuracy.png", target=target)


def plot_time_to_accuracy(history: Sequence[Mapping[str, Any]], path: str | os.PathLike,
                          target: float | None = None) -> None:
    """Draw validation accuracy (%) after each epoch against the summed epoch time so far
    (minutes of the machine the run trained on), with an optional target accuracy line.

    Args:
        history: one dict per epoch with ``val_accuracy`` (a fraction) and ``seconds``.
        path: destination ``.png``.
        target: accuracy (%) to draw as a horizontal line (e.g. the paper's).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    minutes, elapsed = [], 0.0
    for row in history:
        elapsed += row["seconds"] / 60.0
        minutes.append(elapsed)
    fig = Figure(figsize=(6, 4), tight_layout=True)
    ax = fig.subplots()
    ax.plot(minutes, [100 * row["val_accuracy"] for row in history], marker=".", label="after each epoch")
    if target is not None:
        ax.axhline(target, color="gray", linestyle="--", label=f"target {target:.2f}%")
    ax.set(title="time to accuracy", xlabel="summed epoch time (minutes)", ylabel="validation accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def plot_history(history: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> None:
    """Draw loss, error rate (%) and learning rate against epoch into a PNG (matplotlib Agg).

    Args:
        history: one dict per epoch, as written by the training loop.
        path: destination ``.png``.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    epochs = [row["epoch"] for row in history]
    fig = Figure(figsize=(12, 3.6), tight_layout=True)
    ax_loss, ax_err, ax_lr = fig.subplots(1, 3)
    for key, label in (("loss", "train"), ("val_loss", "validation")):
        if key in history[0]:
            ax_loss.plot(epochs, [row[key] for row in history], marker=".", label=label)
    errors = []
    for key, label in (("accuracy", "train"), ("val_accuracy", "validation")):
        if key in history[0]:
            errors += [100 * (1 - row[key]) for row in history]
            ax_err.plot(epochs, errors[-len(history):], marker=".", label=label)
    ax_loss.set(title="loss", xlabel="epoch")
    # A log axis cannot show an error of 0 (a small fine-tune's hold-out often reaches it).
    ax_err.set(title="error rate (%)", xlabel="epoch", yscale="log" if errors and min(errors) > 0 else "linear")
    ax_lr.set(title="learning rate (end of epoch)", xlabel="epoch")
    if "learning_rate" in history[0]:  # metrics files from other tools may not record it
        rates = [row["learning_rate"] for row in history]
        ax_lr.plot(epochs, rates, marker=".")
        ax_lr.set(yscale="log" if min(rates) > 0 else "linear")
    for ax in (ax_loss, ax_err):
        ax.legend()
        ax.grid(alpha=0.3)
    ax_lr.grid(alpha=0.3)
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
