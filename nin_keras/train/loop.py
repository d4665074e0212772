"""One training loop for every ``tf.distribute`` strategy, with checkpoint/resume.

``train(recipe, out_dir)`` runs a recipe (see ``nin_keras.train.recipes``) and writes into
``out_dir``:

- ``checkpoint.npz``: model + optimizer + loop state, rewritten atomically at the end of every
  epoch and every ``checkpoint_every_steps`` steps inside an epoch;
- ``metrics.csv``, ``metrics.json``, ``curves.png``: per-epoch history;
- ``preset/``: the trained model saved with ``nin_keras.zoo.save_preset`` (metrics and the
  exact command in its metadata).

Rerunning the same command after a kill continues from ``checkpoint.npz``: weights, optimizer
slots, learning-rate schedule state, epoch and step counters, the partial epoch's running
metrics, and the data order (each epoch's permutation is drawn from ``(seed, epoch)``, and a
resumed epoch skips the batches already seen). Dropout masks continue too, since the dropout
seed-generator states are model variables.

Why a custom step rather than ``model.fit``: Keras 3's ``fit`` fails under
``MultiWorkerMirroredStrategy`` (keras-team/keras#20585). The same ``tf.function`` step runs
under the default strategy, ``MirroredStrategy`` and ``MultiWorkerMirroredStrategy``: the model
and optimizer are built in ``strategy.scope()``, batches come from
``strategy.experimental_distribute_dataset``, and each replica's loss is divided by the
*global* batch size so that summing gradients across replicas gives the mean gradient.

Under ``MultiWorkerMirroredStrategy`` the chief (worker 0) writes the checkpoint, metrics and
preset; every worker resumes from ``out_dir/checkpoint.npz``, so ``out_dir`` must be a folder all
workers see (a shared filesystem), as with Keras's ``BackupAndRestore``.

Weight decay (recipe ``weight_decay``):

- ``"mode": "l2"`` (the paper's, Caffe's ``weight_decay``): ``0.5 * value * sum(kernel**2)``
  is added to the loss, so each kernel's gradient gains ``value * kernel`` before momentum,
  exactly Caffe's update (equivalent to ``kernel_regularizer=L2(value / 2)``). Biases and
  batch-norm parameters are not decayed.
- ``"mode": "decoupled"``: the optimizer's own ``weight_decay`` (``w -= lr * value * w`` after
  the gradient step, as in AdamW/SGDW), again skipping biases and batch-norm parameters.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import keras
import numpy as np
from nin_keras.errors import TrainingError
from nin_keras.tensorflow_only import import_tensorflow

tf = import_tensorflow(__name__)

from nin_keras.train import strategy as strategy_lib
from nin_keras.data.arrays import fit_preprocessing
from nin_keras.train.components import build_layers, build_network, build_optimizer, is_decayed
from nin_keras.train.checkpoint import load_checkpoint, save_checkpoint, weights_digest
from nin_keras.train.ema import WeightAverage
from nin_keras.train.history import write_history
from nin_keras.train.recipes import mixed_precision_policy, validate_recipe
from nin_keras.train.run_preset import finish_run
from nin_keras.train.splits import training_arrays
from nin_keras.train.schedules import make_schedule

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


def _seeded(configs: Sequence[Mapping[str, Any]], seed: int, epoch: int) -> list[dict[str, Any]]:
    """Augmentation layer configs with seeds drawn from ``(seed, epoch, position)``."""
    seeds = np.random.default_rng([seed, epoch, 1]).integers(0, 2**31 - 1, size=len(configs))
    return [{**c, "config": {**c.get("config", {}), "seed": int(s)}} for c, s in zip(configs, seeds)]


def _permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """This epoch's example order: a function of ``(seed, epoch)`` only, so a resume reproduces it."""
    return np.random.default_rng([seed, epoch]).permutation(n)


@dataclasses.dataclass
class RunParts:
    """What a caller other than a recipe's data set supplies to ``train`` (``nin_keras.train.finetune``).

    Attributes:
        arrays: ``(x_train, y_train, x_val, y_val)`` uint8 images and int64 labels.
        preprocess: the preprocessing layers, already fitted.
        build_model: ``(input_shape, dtype policy or None) -> keras.Model``, called inside the
            strategy's scope.
        finish: ``(model, average, history, extra) -> (test metrics, preset folder)``, called on
            the chief after training, instead of measuring the recipe's test split.
        before_epoch: ``(epoch, loop)`` called before every epoch (a resumed one too), e.g. to
            freeze layers; call ``loop.retrace()`` after changing which variables train.
    """

    arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    preprocess: list
    build_model: Callable[[tuple, str | None], keras.Model]
    finish: Callable[..., tuple[dict[str, Any], Path]]
    before_epoch: Callable[[int, "_Loop"], None] | None = None


class _Loop:
    """The state and steps of one run (kept together so ``train`` reads top to bottom)."""

    def __init__(self, recipe, strategy, model, optimizer, average, preprocess, verbose):
        self.strategy = strategy
        self.model = model
        self.optimizer = optimizer
        self.average = average
        self.preprocess = preprocess
        self.augment_configs = recipe.get("augmentation", [])
        self.verbose = verbose
        self.global_batch = int(recipe["batch_size"])
        self.seed = int(recipe["seed"])
        wd = recipe.get("weight_decay") or {}
        self.l2 = float(wd.get("value", 0.0)) if wd.get("mode", "l2") == "l2" else 0.0
        self.label_smoothing = float((recipe.get("loss") or {}).get("label_smoothing", 0.0))
        self.classes = int(model.output_shape[-1])
        self._train_step = tf.function(self._distributed_train_step)
        self._eval_step = tf.function(self._distributed_eval_step)

    def retrace(self) -> None:
        """Trace the train step again: which variables train is fixed when it is traced."""
        self._train_step = tf.function(self._distributed_train_step)

    # -- data ----------------------------------------------------------------------------------
    def dataset(self, images, labels, epoch=None, skip=0):
        """Distributed batches; with ``epoch``, the training pipeline of that epoch.

        A training epoch visits the images in ``_permutation(seed, epoch)`` order, batched with
        ``drop_remainder``, through augmentation layers seeded from ``(seed, epoch)``; ``skip``
        batches are dropped *after* augmentation, so a resumed epoch sees exactly the crops and
        flips an uninterrupted one would.
        """
        from nin_keras.data import make_pipeline

        training = epoch is not None
        if training:
            order = _permutation(self.seed, epoch, len(images))
            images, labels = images[order], labels[order]
        augment = build_layers(_seeded(self.augment_configs, self.seed, epoch)) if training else ()
        ds = make_pipeline(
            tf.data.Dataset.from_tensor_slices((images, labels)),
            self.global_batch,
            self.preprocess,
            augment,
            shuffle=0,
            training=training,
            drop_remainder=training,
        ).skip(skip)
        options = tf.data.Options()
        # Every worker builds the same ordered dataset; DATA sharding splits each global batch.
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        options.deterministic = True
        return self.strategy.experimental_distribute_dataset(ds.with_options(options))

    # -- steps ---------------------------------------------------------------------------------
    def _per_example_loss(self, labels, probabilities, smoothing):
        one_hot = tf.one_hot(labels, self.classes)
        return keras.losses.categorical_crossentropy(
            one_hot, tf.cast(probabilities, "float32"), label_smoothing=smoothing
        )

    def _sums(self, labels, probabilities, per_example):
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(probabilities, -1), labels), "float32"))
        return tf.reduce_sum(per_example), correct, tf.cast(tf.size(labels), "float32")

    def _replica_train_step(self, x, y):
        with tf.GradientTape() as tape:
            probabilities = self.model(x, training=True)
            per_example = self._per_example_loss(y, probabilities, self.label_smoothing)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=self.global_batch)
            penalties = [tf.cast(l, "float32") for l in self.model.losses]
            if self.l2:
                penalties.append(
                    0.5 * self.l2 * tf.add_n([tf.reduce_sum(tf.square(v)) for v in self.model.trainable_variables if is_decayed(v)])
                )
            if penalties:
                loss += tf.nn.scale_regularization_loss(tf.add_n(penalties))
            scaled = self.optimizer.scale_loss(loss)
        variables = self.model.trainable_variables
        gradients = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        return self._sums(y, probabilities, per_example)

    def _distributed_train_step(self, batch, learning_rate):
        self.optimizer.learning_rate.assign(learning_rate)
        sums = self.strategy.run(self._replica_train_step, args=batch)
        if self.average is not None:
            self.average.update()
        return [self.strategy.reduce(tf.distribute.ReduceOp.SUM, s, axis=None) for s in sums]

    def _replica_eval_step(self, x, y):
        probabilities = self.model(x, training=False)
        return self._sums(y, probabilities, self._per_example_loss(y, probabilities, 0.0))

    def _distributed_eval_step(self, batch):
        sums = self.strategy.run(self._replica_eval_step, args=batch)
        return [self.strategy.reduce(tf.distribute.ReduceOp.SUM, s, axis=None) for s in sums]

    def train_step(self, batch, learning_rate: float) -> np.ndarray:
        """One optimizer step on a distributed batch; returns (loss sum, correct, count)."""
        return np.array([float(s) for s in self._train_step(batch, tf.constant(learning_rate, "float32"))])

    def evaluate(self, images, labels) -> dict[str, float]:
        """Mean loss (no label smoothing) and accuracy over arrays, with the training strategy,
        of the weight average when the run keeps one (the weights it publishes)."""
        totals = np.zeros(3)
        with self.average.applied() if self.average is not None else contextlib.nullcontext():
            for batch in self.dataset(images, labels):
                totals += np.array([float(s) for s in self._eval_step(batch)])
        return {"loss": totals[0] / totals[2], "accuracy": totals[1] / totals[2]}

    def checkpoint_groups(self) -> dict[str, list]:
        """Variables a checkpoint holds besides the model's and the optimizer's."""
        return {"ema": self.average.variables} if self.average is not None else {}


def train(
    recipe: Mapping[str, Any],
    out_dir: str | os.PathLike,
    *,
    strategy: str | tf.distribute.Strategy = "default",
    data_dir: str | os.PathLike | None = None,
    max_steps: int | None = None,
    checkpoint_every_steps: int | None = None,
    command: str | None = None,
    verbose: int = 1,
    parts: RunParts | None = None,
) -> TrainResult:
    """Train a recipe, resuming from ``out_dir/checkpoint.npz`` when it exists.

    Args:
        recipe: a recipe dict (``load_recipe``), already carrying any overrides such as epochs.
        out_dir: the run's folder; rerunning with the same folder resumes.
        strategy: ``"default"``, ``"mirrored"``, ``"multiworker"`` or a strategy object. Must be
            created before any other TensorFlow op in the process (the CLI does that).
        data_dir: local data folder.
        max_steps: stop training after this many optimizer steps in total (counted across
            resumes), checkpoint, then evaluate and write the preset as usual (a smoke test of
            the whole run; rerun with a larger value to continue).
        checkpoint_every_steps: also checkpoint every N steps inside an epoch (default: the
            recipe's ``checkpoint_every_steps``, else 200; 0 disables).
        command: the command line to record in the metrics and preset metadata.
        verbose: 1 shows a Keras progress bar and an epoch summary (chief only), 0 is silent.
        parts: data, preprocessing, model and finish supplied by the caller instead of the
            recipe's ``dataset``, ``preprocessing`` and ``model`` (see ``RunParts``); the recipe
            still names everything else and is what a resume is checked against.

    Returns:
        A ``TrainResult``.

    Example:
        >>> from nin_keras.train import load_recipe, train
        >>> result = train(load_recipe("nin_mnist_fast"), "runs/nin_mnist_fast")
        >>> result.test_metrics["error_percent"]
    """
    validate_recipe(dict(recipe))
    recipe = dict(recipe)
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
        raise ValueError(f"max_steps must be None or an integer >= 1, got {max_steps!r}")
    if isinstance(strategy, str):
        strategy = strategy_lib.make_strategy(strategy)
    chief = strategy_lib.is_chief(strategy)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(out_dir, chief)
    every = recipe.get("checkpoint_every_steps", 200) if checkpoint_every_steps is None else checkpoint_every_steps
    keras.utils.set_random_seed(int(recipe["seed"]))

    x_train, y_train, x_val, y_val = parts.arrays if parts else training_arrays(recipe, data_dir)
    steps_per_epoch = len(x_train) // recipe["batch_size"]
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size {recipe['batch_size']} is larger than the {len(x_train)} training images")

    # Preprocessing runs in float32 in the input pipeline; statistics are fitted on the
    # training images only (never the hold-out or the test set).
    if parts:
        preprocess = parts.preprocess
    else:
        preprocess = build_layers(recipe.get("preprocessing", []))
        fit_preprocessing(preprocess, x_train)
    input_shape = (None, *x_train.shape[1:])
    for layer in preprocess:
        input_shape = layer.compute_output_shape(input_shape)
    input_shape = tuple(input_shape[1:])

    policy = mixed_precision_policy(recipe)
    with strategy.scope():
        model = parts.build_model(input_shape, policy) if parts else build_network(recipe["model"], input_shape, policy)
        optimizer = build_optimizer(recipe["optimizer"], recipe.get("weight_decay"), policy)
        optimizer.build(model.trainable_variables)
        average = WeightAverage(model, **recipe["ema"]) if recipe.get("ema") else None
    schedule = make_schedule(recipe["schedule"], recipe["optimizer"]["learning_rate"], steps_per_epoch, recipe["epochs"])
    loop = _Loop(recipe, strategy, model, optimizer, average, preprocess, verbose if chief else 0)

    state = {"epoch": 0, "step": 0, "global_step": 0, "partial": [0.0, 0.0, 0.0], "history": [],
             "schedule": schedule.get_state(), "finished": False, "recipe": recipe}
    resumed_from = None
    checkpoint = out_dir / CHECKPOINT
    if checkpoint.exists():
        state = load_checkpoint(checkpoint, model, optimizer, loop.checkpoint_groups())
        _check_same_recipe(state["recipe"], recipe, checkpoint)
        state["recipe"] = recipe
        schedule.set_state(state["schedule"])
        resumed_from = {"epoch": state["epoch"], "step": state["step"]}
        if verbose and chief:
            print(f"Resuming from {checkpoint}: epoch {state['epoch'] + 1}, step {state['step']}", flush=True)

    def save():
        state["schedule"] = schedule.get_state()
        if chief:
            save_checkpoint(checkpoint, model, optimizer, state, loop.checkpoint_groups())

    extra = {"recipe": recipe, "command": command, "strategy": type(strategy).__name__}
    while not state["finished"] and state["epoch"] < recipe["epochs"]:
        if max_steps is not None and state["global_step"] >= max_steps:
            break
        epoch, start = state["epoch"], state["step"]
        if parts and parts.before_epoch:
            parts.before_epoch(epoch, loop)
        bar = keras.utils.Progbar(steps_per_epoch, stateful_metrics=["loss", "accuracy", "lr"]) if loop.verbose else None
        if bar:
            print(f"Epoch {epoch + 1}/{recipe['epochs']}", flush=True)
        # Wall time measures the budget; process CPU time is recorded next to it because it barely
        # moves when the machine is shared (a slowed epoch keeps its CPU seconds, not its wall time).
        t0 = time.time() - state.get("partial_seconds", 0.0)
        cpu0 = time.process_time() - state.get("partial_cpu_seconds", 0.0)
        partial = np.array(state["partial"])
        learning_rate = schedule.learning_rate(epoch, start)
        for step, batch in enumerate(loop.dataset(x_train, y_train, epoch, skip=start), start=start):
            learning_rate = schedule.learning_rate(epoch, step)
            sums = loop.train_step(batch, learning_rate)
            if not np.isfinite(sums[0]):
                raise _diverged(sums[0], epoch, step, learning_rate, checkpoint)
            partial += sums
            state.update(step=step + 1, global_step=state["global_step"] + 1, partial=partial.tolist(),
                         partial_seconds=time.time() - t0, partial_cpu_seconds=time.process_time() - cpu0)
            if bar:
                bar.update(step + 1, [("loss", partial[0] / partial[2]), ("accuracy", partial[1] / partial[2]), ("lr", learning_rate)])
            if max_steps is not None and state["global_step"] >= max_steps:
                break
            if every and (step + 1) % every == 0 and step + 1 < steps_per_epoch:
                save()
        if state["step"] < steps_per_epoch:  # stopped by max_steps inside the epoch
            save()
            if bar:
                print(flush=True)
            break
        row = {"epoch": epoch + 1, "loss": float(partial[0] / partial[2]), "accuracy": float(partial[1] / partial[2])}
        if len(x_val):
            row.update({f"val_{k}": float(v) for k, v in loop.evaluate(x_val, y_val).items()})
        row.update(learning_rate=learning_rate, seconds=round(time.time() - t0, 2),
                   cpu_seconds=round(time.process_time() - cpu0, 2))
        schedule.on_epoch_end(epoch, row)
        state["history"].append(row)
        state.update(epoch=epoch + 1, step=0, partial=[0.0, 0.0, 0.0], partial_seconds=0.0,
                     partial_cpu_seconds=0.0)
        # Only the schedule ends a run for good; reaching ``epochs`` does not, so rerunning with a
        # larger --epochs extends a finished run.
        state["finished"] = schedule.should_stop()
        save()
        if chief:
            write_history(out_dir, state["history"], extra)
        if bar:
            print("  " + "  ".join(f"{k}: {v:.4g}" for k, v in row.items() if k != "epoch"), flush=True)

    digest = weights_digest(model, [v for group in loop.checkpoint_groups().values() for v in group])
    test_metrics = preset_dir = None
    if chief and parts:
        test_metrics, preset_dir = parts.finish(model, average, state["history"], extra)
    elif chief:
        test_metrics, preset_dir = finish_run(recipe, model, average, preprocess, out_dir, state["history"], extra, data_dir, verbose)
    return TrainResult(out_dir, state["history"], test_metrics, preset_dir, digest, resumed_from)


def _diverged(loss: float, epoch: int, step: int, learning_rate: float, checkpoint: Path) -> TrainingError:
    """The error that ends a run whose loss stopped being a number (nothing more is written)."""
    kept = f"the last checkpoint ({checkpoint}) is" if checkpoint.exists() else "no checkpoint was"
    return TrainingError(
        f"training diverged: the loss became {loss} at epoch {epoch + 1}, step {step + 1} (learning rate "
        f"{learning_rate:.3g}); {kept} kept and no preset was written. Start a new run (another --out, or "
        "delete this run's folder) with a lower --learning-rate."
    )


# Keys a resumed run may change: the planned length and the documentation.
_RESUMABLE_CHANGES = ("epochs", "description", "notes", "paper")


def _check_same_recipe(saved: Mapping[str, Any], current: Mapping[str, Any], checkpoint: Path) -> None:
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


def _remove_stale_temporaries(out_dir: Path, chief: bool) -> None:
    """Drop half-written checkpoint files left by a process killed during ``atomic_write``."""
    if chief:
        for tmp in out_dir.glob(f".{CHECKPOINT}.*.part*"):
            tmp.unlink(missing_ok=True)
