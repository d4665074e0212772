"""What both training engines (``loop.py`` on TensorFlow, ``fit_loop.py`` elsewhere) and the run
builder (``run.py``) share: a run's inputs, settings and outcome as plain values, the checkpointed
position (``RunState``) and the helpers every engine's epoch uses. Its own module so that the
engines import it and not the builder that calls them."""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from nin_keras.errors import CheckpointError, TrainingError
from nin_keras.train.checkpoint import load_checkpoint, read_state, save_checkpoint
from nin_keras.train.history import write_history
from nin_keras.train.recipes import Recipe

CHECKPOINT = "checkpoint.npz"


@dataclasses.dataclass(frozen=True)
class NetworkStart:
    """The network a run trains: a zoo architecture, its arguments, optional starting weights
    (``model.get_weights()`` order; None: the architecture's own initialisation)."""

    architecture: str
    kwargs: dict[str, Any]
    weights: list[np.ndarray] | None = None


@dataclasses.dataclass(frozen=True)
class FreezePlan:
    """Layers (by name) that do not train while ``frozen(epoch)``: the first ``epochs`` epochs,
    or the whole run when ``epochs`` is None."""

    layers: frozenset[str]
    epochs: int | None = None

    def frozen(self, epoch: int) -> bool:
        return self.epochs is None or epoch < self.epochs


@dataclasses.dataclass
class RunInputs:
    """What a run trains on: ``(x_train, y_train, x_val, y_val)`` (uint8 images, int64 labels),
    the preprocessing layers (already fitted), the network and an optional freeze plan."""

    arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    preprocess: list
    network: NetworkStart
    freeze: FreezePlan | None = None


@dataclasses.dataclass
class RunSettings:
    """How a run executes (nothing here changes what it computes, except ``max_steps``)."""

    out_dir: Path
    strategy: Any = "default"
    max_steps: int | None = None
    checkpoint_every_steps: int | None = None
    command: str | None = None
    verbose: int = 1


@dataclasses.dataclass
class RunOutcome:
    """A finished run: ``network`` is a float32 model (default device placement) holding the last
    step's weights; ``averaged_weights`` the weight average's (``get_weights`` order), if kept."""

    network: keras.Model
    averaged_weights: list[np.ndarray] | None
    history: list[dict[str, Any]]
    weights_digest: str
    resumed_from: dict[str, int] | None
    chief: bool
    extra: dict[str, Any]


class RunState:
    """The loop position a checkpoint carries (``values``), resume, and the chief-only writes.

    ``values``: ``epoch``, ``step`` (in the epoch), ``global_step``, ``partial`` (the running
    epoch's loss sum, correct count and example count), ``history``, ``schedule`` (its state),
    ``finished`` and ``recipe`` (the JSON form, compared on resume).
    """

    def __init__(self, recipe: Recipe, out_dir: Path, chief: bool):
        self.recipe = recipe
        self.chief = chief
        self.out_dir = out_dir
        self.checkpoint = out_dir / CHECKPOINT
        self.values: dict[str, Any] = {"epoch": 0, "step": 0, "global_step": 0, "partial": [0.0, 0.0, 0.0],
                                       "history": [], "schedule": {}, "finished": False, "recipe": recipe.to_dict()}
        if chief:  # half-written checkpoint files left by a process killed inside ``atomic_write``
            for tmp in out_dir.glob(f".{CHECKPOINT}.*.part*"):
                tmp.unlink(missing_ok=True)

    def resume(self, model, optimizer, groups: dict, schedule, verbose: int) -> dict[str, int] | None:
        """Load the checkpoint when there is one; return ``{"epoch", "step"}`` it continues from."""
        if not self.checkpoint.exists():
            return None
        values = load_checkpoint(self.checkpoint, model, optimizer, groups)
        check_same_recipe(values["recipe"], self.values["recipe"], self.checkpoint)
        values["recipe"] = self.values["recipe"]
        self.values = values
        schedule.set_state(values["schedule"])
        if verbose and self.chief:
            print(f"Resuming from {self.checkpoint}: epoch {values['epoch'] + 1}, step {values['step']}", flush=True)
        return {"epoch": values["epoch"], "step": values["step"]}

    def save(self, model, optimizer, groups: dict, schedule) -> None:
        self.values["schedule"] = schedule.get_state()
        if self.chief:
            save_checkpoint(self.checkpoint, model, optimizer, self.values, groups)

    def end_epoch(self, row: dict[str, Any], schedule, extra: dict[str, Any]) -> None:
        """Record a finished epoch (the schedule hears its metrics; only the schedule ends a run
        for good, so rerunning with a larger ``epochs`` extends a finished one)."""
        schedule.on_epoch_end(self.values["epoch"], row)
        self.values["history"].append(row)
        self.values.update(epoch=self.values["epoch"] + 1, step=0, partial=[0.0, 0.0, 0.0], partial_seconds=0.0,
                           partial_cpu_seconds=0.0, finished=schedule.should_stop())
        if self.chief:
            write_history(self.out_dir, self.values["history"], extra)

    def more_to_train(self, max_steps: int | None) -> bool:
        return (not self.values["finished"] and self.values["epoch"] < self.recipe.epochs
                and (max_steps is None or self.values["global_step"] < max_steps))


#: An epoch whose mean training loss exceeds this many times a uniform guess's (ln of the number of
#: classes) has diverged: a run that learns stays near or below ln K from its first steps, and one
#: that blew up can come back to a finite loss with infinite weights behind dead ReLUs.
DIVERGED_LOSS_FACTOR = 10.0


def diverged(loss: float, epoch: int, step: int, learning_rate: float, checkpoint: Path,
             what: str | None = None) -> TrainingError:
    """The error that ends a run whose loss stopped being a number, or ``what`` else went wrong
    (nothing more is written)."""
    kept = f"the last checkpoint ({checkpoint}) is" if checkpoint.exists() else "no checkpoint was"
    what = what or f"the loss became {loss}"
    return TrainingError(
        f"training diverged: {what} at epoch {epoch + 1}, step {step + 1} (learning rate "
        f"{learning_rate:.3g}); {kept} kept and no preset was written. Start a new run (another --out, or "
        "delete this run's folder) with a lower --learning-rate."
    )


# Keys a resumed run may change: the planned length and the documentation.
_RESUMABLE_CHANGES = ("epochs", "description", "notes", "paper")


def check_epoch(partial: np.ndarray, classes: int, weights: Sequence[Any], epoch: int, step: int,
                learning_rate: float, checkpoint: Path) -> None:
    """The end of an epoch: refuse to go on (``diverged``) when its mean training loss is not finite
    or over ``DIVERGED_LOSS_FACTOR`` times a guess's, or a weight is NaN or infinite.

    Args:
        partial: the epoch's ``[loss sum, correct, examples]``.
        classes: the number of classes (a guess's loss is ``ln classes``).
        weights: the network's variables.
    """
    loss = float(partial[0] / max(partial[2], 1))
    guess = math.log(max(classes, 2))
    if not np.isfinite(loss) or loss > DIVERGED_LOSS_FACTOR * guess:
        raise diverged(loss, epoch, step, learning_rate, checkpoint,
                       f"the epoch's mean loss became {loss:.4g}, over {DIVERGED_LOSS_FACTOR:g} times a "
                       f"guess's {guess:.3g}")
    for weight in weights:
        if not np.all(np.isfinite(keras.ops.convert_to_numpy(weight))):
            raise diverged(loss, epoch, step, learning_rate, checkpoint,
                           f"the weight {weight.path} became NaN or infinite")


def check_same_recipe(saved: dict[str, Any], current: dict[str, Any], checkpoint: Path) -> None:
    """A checkpoint may only be continued by the recipe that wrote it (``epochs`` and the
    documentation keys may change; a step-based schedule then stretches to the new length)."""
    changed = sorted(
        k for k in set(saved) | set(current) if k not in _RESUMABLE_CHANGES and saved.get(k) != current.get(k)
    )
    if changed:
        raise ValueError(
            f"{checkpoint} was written by a different recipe (keys {changed} differ); "
            "use another --out folder or delete the checkpoint"
        )


def float32_network(start: NetworkStart, weights: list[np.ndarray]) -> keras.Model:
    """A float32 copy of the trained network (a preset is float32 whatever it trained in)."""
    from nin_keras.train.components import create_network

    network = create_network(start, None)
    network.set_weights(weights)
    return network


def epoch_row(epoch: int, partial: np.ndarray, validation: dict[str, float] | None, learning_rate: float,
              seconds: float, cpu_seconds: float) -> dict[str, Any]:
    """One history row: training means over the epoch, validation metrics, rate and times."""
    row = {"epoch": epoch + 1, "loss": float(partial[0] / partial[2]), "accuracy": float(partial[1] / partial[2])}
    if validation is not None:
        row.update({f"val_{k}": float(v) for k, v in validation.items()})
    row.update(learning_rate=learning_rate, seconds=round(seconds, 2), cpu_seconds=round(cpu_seconds, 2))
    return row


def print_row(row: dict[str, Any]) -> None:
    print("  " + "  ".join(f"{k}: {v:.4g}" for k, v in row.items() if k != "epoch"), flush=True)


def check_one_checkpoint(checkpoint: Path, gather: Callable[[list[int]], np.ndarray]) -> None:
    """Before anything is built: the processes of a run found one checkpoint to resume from.

    Each process resumes from its own ``out_dir``, where only the chief writes: with folders that
    are not one shared folder the processes would start from different weights, which JAX reports
    as a dump of unequal arrays and tf.distribute not at all.

    Args:
        checkpoint: this process's ``out_dir/checkpoint.npz``.
        gather: ``strategy.gather_from_processes`` for the run's strategy (a collective).

    Raises:
        CheckpointError: the processes found different checkpoints, or some found none.
    """
    found = [-1, -1]
    if checkpoint.exists():
        found = [read_state(checkpoint)["global_step"], zlib.crc32(checkpoint.read_bytes()) & 0x7FFFFFFF]
    rows = gather(found)
    if (rows == rows[0]).all():
        return
    seen = ", ".join("none" if step < 0 else f"step {step}" for step, _ in rows.tolist())
    raise CheckpointError(
        f"the processes of this run did not find one checkpoint to resume from (in process order: {seen}; "
        f"this one looked for {checkpoint}): every process reads the chief's checkpoint, so give them all "
        "the same output folder, on a filesystem they all see")
