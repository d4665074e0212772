"""The TensorFlow backend's training loop: one step for every ``tf.distribute`` strategy.

``nin_keras.train.run.run`` calls ``run_tensorflow`` on the TensorFlow backend (what the run
writes, and how it resumes, is described there). A resumed run is bit-identical to an
uninterrupted one: the data order and augmentation are drawn from ``(seed, epoch)`` in the
``tf.data`` pipeline, and the dropout seed-generator states are model variables in the checkpoint.

Why a custom step rather than ``model.fit``: Keras 3's ``fit`` fails under
``MultiWorkerMirroredStrategy`` (keras-team/keras#20585). The same ``tf.function`` step runs
under the default strategy, ``MirroredStrategy`` and ``MultiWorkerMirroredStrategy``: the model
and optimizer are built in ``strategy.scope()``, batches come from
``strategy.experimental_distribute_dataset``, and each replica's loss is divided by the
*global* batch size so that summing gradients across replicas gives the mean gradient.

Under ``MultiWorkerMirroredStrategy`` the chief (worker 0) writes the checkpoint, metrics and
preset; every worker resumes from ``out_dir/checkpoint.npz``, so ``out_dir`` must be a folder all
workers see (a shared filesystem), as with Keras's ``BackupAndRestore``.

Weight decay ``"mode": "l2"`` adds ``0.5 * value * sum(kernel**2)`` over the trained kernels to
each replica's loss (scaled like the loss), exactly Caffe's update.
"""

from __future__ import annotations

import contextlib
import functools
import time
from typing import Any, Mapping, Sequence

import keras
import numpy as np
from nin_keras.tensorflow_only import import_tensorflow

tf = import_tensorflow(__name__)

from nin_keras.train import strategy as strategy_lib
from nin_keras.train.checkpoint import weights_digest
from nin_keras.train.components import build_augmentation, build_optimizer, create_network, is_decayed
from nin_keras.train.ema import WeightAverage
from nin_keras.train.recipes import Recipe
from nin_keras.train.run_state import (CHECKPOINT, RunInputs, RunOutcome, RunSettings, RunState, check_epoch,
                                       check_one_checkpoint, diverged, epoch_row, float32_network, print_row)
from nin_keras.train.schedules import make_schedule


def _permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """This epoch's example order: a function of ``(seed, epoch)`` only, so a resume reproduces it."""
    return np.random.default_rng([seed, epoch]).permutation(n)


class _Loop:
    """The state and steps of one run (kept together so ``train`` reads top to bottom)."""

    def __init__(self, recipe, strategy, model, optimizer, average, preprocess, verbose):
        recipe = Recipe.parse(recipe)
        self.strategy = strategy
        self.model = model
        self.optimizer = optimizer
        self.average = average
        self.preprocess = preprocess
        self.recipe = recipe
        self.verbose = verbose
        self.global_batch = recipe.batch_size
        self.seed = recipe.seed
        self.l2 = recipe.weight_decay.l2
        self.label_smoothing = recipe.label_smoothing
        self.classes = int(model.output_shape[-1])
        self._train_step = tf.function(self._distributed_train_step)
        self._eval_step = tf.function(self._distributed_eval_step)

    def freeze(self, plan, epoch: int) -> None:
        """Make the plan's layers trainable or not for ``epoch``; trace the train step again when
        that changed (which variables train is fixed when it is traced). The optimizer keeps its
        slots across the change (it was built over every variable)."""
        frozen = plan.frozen(epoch)
        changed = [layer for layer in self.model.layers if layer.name in plan.layers and layer.trainable == frozen]
        for layer in changed:
            layer.trainable = not frozen
        if changed:
            self._train_step = tf.function(self._distributed_train_step)
            if self.verbose:
                print(f"Epoch {epoch + 1}: body {'frozen (classifier only)' if frozen else 'trains'}", flush=True)

    # -- data ----------------------------------------------------------------------------------
    def dataset(self, images, labels, epoch=None, skip=0):
        """Distributed batches; with ``epoch``, the training pipeline of that epoch.

        A training epoch visits the images in ``_permutation(seed, epoch)`` order, batched with
        ``drop_remainder``, through augmentation layers seeded from ``(seed, epoch)``; ``skip``
        batches are dropped *after* augmentation, so a resumed epoch sees exactly the crops and
        flips an uninterrupted one would. Its batches are ``(images, targets, labels)``: the
        targets one-hot, or soft when the recipe mixes (drawn in order, in a sequential ``map``).
        """
        from nin_keras.data import make_pipeline

        training = epoch is not None
        if training:
            order = _permutation(self.seed, epoch, len(images))
            images, labels = images[order], labels[order]
        augment = build_augmentation(self.recipe, (self.seed, epoch)) if training else None
        ds = make_pipeline(
            tf.data.Dataset.from_tensor_slices((images, labels)),
            self.global_batch,
            self.preprocess,
            augment.augment if training else (),
            shuffle=0,
            training=training,
            drop_remainder=training,
            raw_augmentation=augment.raw if training else (),
        )
        if training:
            def mix(x, y, mixing=augment.mixing):
                targets = tf.one_hot(y, self.classes)
                if mixing is not None:
                    x, targets = mixing.mix(x, targets, mixing.get_random_transformation(x))
                return x, targets, y

            ds = ds.map(mix)
        ds = ds.skip(skip)
        options = tf.data.Options()
        # Every worker builds the same ordered dataset; DATA sharding splits each global batch.
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        options.deterministic = True
        return self.strategy.experimental_distribute_dataset(ds.with_options(options))

    # -- steps ---------------------------------------------------------------------------------
    def _per_example_loss(self, targets, probabilities, smoothing):
        return keras.losses.categorical_crossentropy(
            targets, tf.cast(probabilities, "float32"), label_smoothing=smoothing
        )

    def _sums(self, labels, probabilities, per_example):
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(probabilities, -1), labels), "float32"))
        return tf.reduce_sum(per_example), correct, tf.cast(tf.size(labels), "float32")

    def _replica_train_step(self, x, targets, y):
        with tf.GradientTape() as tape:
            probabilities = self.model(x, training=True)
            per_example = self._per_example_loss(targets, probabilities, self.label_smoothing)
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
        return self._sums(y, probabilities, self._per_example_loss(tf.one_hot(y, self.classes), probabilities, 0.0))

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


def run_tensorflow(recipe: Recipe, inputs: RunInputs, settings: RunSettings) -> RunOutcome:
    """``nin_keras.train.run.run`` on the TensorFlow backend (see the module docstring)."""
    strategy = settings.strategy
    if isinstance(strategy, str):
        strategy = strategy_lib.make_strategy(strategy)
    chief = strategy_lib.is_chief(strategy)
    out_dir = settings.out_dir
    check_one_checkpoint(out_dir / CHECKPOINT, functools.partial(strategy_lib.gather_from_processes, strategy))
    run_state = RunState(recipe, out_dir, chief)
    every = recipe.checkpoint_every_steps if settings.checkpoint_every_steps is None else settings.checkpoint_every_steps
    max_steps = settings.max_steps
    keras.utils.set_random_seed(recipe.seed)
    x_train, y_train, x_val, y_val = inputs.arrays
    steps_per_epoch = len(x_train) // recipe.batch_size

    with strategy.scope():
        model = create_network(inputs.network, recipe.policy)
        optimizer = build_optimizer(recipe.optimizer.config, recipe.weight_decay, recipe.policy)
        optimizer.build(model.trainable_variables)
        average = WeightAverage(model, recipe.ema.decay, recipe.ema.warmup) if recipe.ema else None
    schedule = make_schedule(recipe.schedule, recipe.optimizer.learning_rate, steps_per_epoch, recipe.epochs)
    loop = _Loop(recipe, strategy, model, optimizer, average, inputs.preprocess, settings.verbose if chief else 0)
    groups = loop.checkpoint_groups()
    resumed_from = run_state.resume(model, optimizer, groups, schedule, settings.verbose)
    state = run_state.values

    def save():
        run_state.save(model, optimizer, groups, schedule)

    extra = {"recipe": recipe.to_dict(), "command": settings.command, "strategy": type(strategy).__name__}
    while run_state.more_to_train(max_steps):
        epoch, start = state["epoch"], state["step"]
        if inputs.freeze is not None:
            loop.freeze(inputs.freeze, epoch)
        bar = keras.utils.Progbar(steps_per_epoch, stateful_metrics=["loss", "accuracy", "lr"]) if loop.verbose else None
        if bar:
            print(f"Epoch {epoch + 1}/{recipe.epochs}", flush=True)
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
                raise diverged(sums[0], epoch, step, learning_rate, run_state.checkpoint)
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
        check_epoch(partial, loop.classes, loop.model.weights, epoch, state["step"] - 1, learning_rate,
                    run_state.checkpoint)
        validation = loop.evaluate(x_val, y_val) if len(x_val) else None
        row = epoch_row(epoch, partial, validation, learning_rate, time.time() - t0, time.process_time() - cpu0)
        run_state.end_epoch(row, schedule, extra)
        save()
        if bar:
            print_row(row)

    digest = weights_digest(model, [v for group in groups.values() for v in group])
    averaged = average.averaged_weights(model) if average is not None else None
    network = float32_network(inputs.network, model.get_weights())
    return RunOutcome(network, averaged, state["history"], digest, resumed_from, chief, extra)
