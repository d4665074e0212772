"""One run builder for every Keras backend: ``train(recipe, out_dir)`` and what ``finetune`` uses.

A run is a typed recipe (``nin_keras.train.recipes.Recipe``) plus ``RunInputs``: the training and
validation arrays, the fitted preprocessing layers, the network to start from and an optional
freeze plan, all plain values. ``run`` trains them on the current backend and returns the trained
network; the caller measures it and writes its preset (``train``: the recipe's test split,
``finetune``: its held-out images).

- On TensorFlow, ``nin_keras.train.loop`` runs the ``tf.distribute`` step loop (the default
  strategy, ``MirroredStrategy``, ``MultiWorkerMirroredStrategy``; Keras's ``fit`` fails under the
  last, keras-team/keras#20585), fed by ``tf.data``.
- On JAX (and any other backend), ``nin_keras.train.fit_loop`` runs Keras's own ``model.fit`` on
  a training model (preprocessing, seeded augmentation and the network as layers) fed by a
  ``keras.utils.PyDataset`` of uint8 batches, with callbacks for the weight average, checkpoints and
  the divergence check; ``--strategy data_parallel`` uses ``keras.distribution.DataParallel``.

Both write into ``out_dir``:

- ``checkpoint.npz``: model + optimizer + loop state, rewritten atomically at the end of every
  epoch and every ``checkpoint_every_steps`` steps inside an epoch;
- ``metrics.csv``, ``metrics.json``, ``curves.png``, ``time_to_accuracy.png``: per-epoch history;
- ``preset/`` (``train``): the trained model saved with ``nin_keras.zoo.save_preset``.

Rerunning the same command after a kill continues from ``checkpoint.npz``: weights, optimizer
slots, schedule state, epoch and step counters, the partial epoch's running metrics, and the data
order (each epoch's permutation is drawn from ``(seed, epoch)``, and a resumed epoch skips the
batches already seen). Only the chief (worker 0, process 0) writes.

Weight decay (recipe ``weight_decay``): ``"mode": "l2"`` (the paper's, Caffe's) adds
``0.5 * value * sum(kernel**2)`` over the trained kernels to the loss, so each kernel's gradient
gains ``value * kernel`` before momentum (biases and batch-norm parameters are not decayed);
``"mode": "decoupled"`` is the optimizer's own ``weight_decay`` (SGDW/AdamW), skipping them too.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import keras
import numpy as np

from nin_keras.arguments import check_count
from nin_keras.errors import TrainingError
from nin_keras.train.checkpoint import load_checkpoint, save_checkpoint
from nin_keras.train.history import write_history
from nin_keras.train.recipes import Recipe

CHECKPOINT = "checkpoint.npz"


@dataclasses.dataclass
class TrainResult:
    """What ``train`` returns.

    Attributes:
        out_dir: the run's folder.
        history: one dict of metrics per finished epoch.
        test_metrics: ``{"accuracy", "loss", "error_percent", "examples"}`` on the test split
            (None on non-chief workers).
        preset_dir: where the preset was written (None on non-chief workers).
        weights_digest: sha256 over all model variables (equal on every worker of a run).
        resumed_from: ``{"epoch", "step"}`` of the checkpoint the run started from, or None.
    """

    out_dir: Path
    history: list[dict[str, Any]]
    test_metrics: dict[str, Any] | None
    preset_dir: Path | None
    weights_digest: str
    resumed_from: dict[str, int] | None


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


def input_shape_after(preprocess, image_shape: tuple) -> tuple:
    """The network's input shape: ``image_shape`` through the preprocessing layers."""
    shape = (None, *image_shape)
    for layer in preprocess:
        shape = layer.compute_output_shape(shape)
    return tuple(shape[1:])


def recipe_inputs(recipe: Recipe, data_dir: str | os.PathLike | None = None) -> RunInputs:
    """The recipe's data set, preprocessing (fitted on the training images only, never the
    hold-out or the test set) and network."""
    from nin_keras.data.arrays import fit_preprocessing
    from nin_keras.train.components import build_layers
    from nin_keras.train.splits import training_arrays

    arrays = training_arrays(recipe.to_dict(), data_dir)
    preprocess = build_layers(recipe.preprocessing)
    fit_preprocessing(preprocess, arrays[0])
    shape = input_shape_after(preprocess, arrays[0].shape[1:])
    return RunInputs(arrays, preprocess, NetworkStart(recipe.model.name, {"input_shape": shape, **recipe.model.kwargs}))


def run(recipe: Recipe, inputs: RunInputs, settings: RunSettings) -> RunOutcome:
    """Train ``inputs`` as ``recipe`` says on the current Keras backend, resuming from
    ``settings.out_dir/checkpoint.npz`` when it exists (see the module docstring)."""
    if len(inputs.arrays[0]) // recipe.batch_size < 1:
        raise ValueError(f"batch_size {recipe.batch_size} is larger than the {len(inputs.arrays[0])} training images")
    settings.out_dir.mkdir(parents=True, exist_ok=True)
    if keras.backend.backend() == "tensorflow":
        from nin_keras.train.loop import run_tensorflow

        return run_tensorflow(recipe, inputs, settings)
    from nin_keras.train.fit_loop import run_fit

    return run_fit(recipe, inputs, settings)


def train(
    recipe: Recipe | dict[str, Any],
    out_dir: str | os.PathLike,
    *,
    strategy: Any = "default",
    data_dir: str | os.PathLike | None = None,
    max_steps: int | None = None,
    checkpoint_every_steps: int | None = None,
    command: str | None = None,
    verbose: int = 1,
) -> TrainResult:
    """Train a recipe, resuming from ``out_dir/checkpoint.npz`` when it exists.

    Args:
        recipe: a recipe dict (``load_recipe``) or ``Recipe``, already carrying any overrides.
        out_dir: the run's folder; rerunning with the same folder resumes.
        strategy: ``"default"``; on TensorFlow ``"mirrored"``, ``"multiworker"`` or a
            ``tf.distribute`` strategy (created before any other TensorFlow op in the process;
            the CLI does that); on JAX ``"data_parallel"`` (``nin_keras.train.strategy``).
        data_dir: local data folder.
        max_steps: stop training after this many optimizer steps in total (counted across
            resumes), checkpoint, then evaluate and write the preset as usual (a smoke test of
            the whole run; rerun with a larger value to continue).
        checkpoint_every_steps: also checkpoint every N steps inside an epoch (default: the
            recipe's ``checkpoint_every_steps``, else 200; 0 disables).
        command: the command line to record in the metrics and preset metadata.
        verbose: 1 shows a progress bar and an epoch summary (chief only), 0 is silent.

    Returns:
        A ``TrainResult``.

    Raises:
        ValueError: a malformed recipe or argument, or a checkpoint of another recipe.
        TrainingError: the loss became NaN or infinite (no preset is written).

    Example:
        >>> from nin_keras.train import load_recipe, train
        >>> result = train(load_recipe("nin_mnist_fast"), "runs/nin_mnist_fast")
        >>> result.test_metrics["error_percent"]
    """
    from nin_keras.train import strategy as strategy_lib
    from nin_keras.train.run_preset import finish_run

    recipe = Recipe.parse(recipe)
    check_max_steps(max_steps)
    if isinstance(strategy, str):  # first: a tf.distribute strategy must precede other TF ops
        strategy = strategy_lib.make_strategy(strategy)
    keras.utils.set_random_seed(recipe.seed)
    inputs = recipe_inputs(recipe, data_dir)
    out_dir = Path(out_dir)
    outcome = run(recipe, inputs, RunSettings(out_dir, strategy, max_steps, checkpoint_every_steps, command, verbose))
    test_metrics = preset_dir = None
    if outcome.chief:
        test_metrics, preset_dir = finish_run(recipe, outcome, inputs.preprocess, out_dir, data_dir, verbose)
    return TrainResult(out_dir, outcome.history, test_metrics, preset_dir, outcome.weights_digest, outcome.resumed_from)


def check_max_steps(max_steps: Any) -> None:
    check_count(max_steps, "max_steps", optional=True)


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


def diverged(loss: float, epoch: int, step: int, learning_rate: float, checkpoint: Path) -> TrainingError:
    """The error that ends a run whose loss stopped being a number (nothing more is written)."""
    kept = f"the last checkpoint ({checkpoint}) is" if checkpoint.exists() else "no checkpoint was"
    return TrainingError(
        f"training diverged: the loss became {loss} at epoch {epoch + 1}, step {step + 1} (learning rate "
        f"{learning_rate:.3g}); {kept} kept and no preset was written. Start a new run (another --out, or "
        "delete this run's folder) with a lower --learning-rate."
    )


# Keys a resumed run may change: the planned length and the documentation.
_RESUMABLE_CHANGES = ("epochs", "description", "notes", "paper")


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

