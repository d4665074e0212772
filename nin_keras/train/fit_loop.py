"""Training on JAX (and any Keras backend but TensorFlow) with Keras's own ``model.fit``.

``nin_keras.train.run.run`` calls ``run_fit`` when the backend is not TensorFlow. The pieces are
Keras's, with small additions where Keras lacks one:

- the training model: (uint8 images, one-hot labels) -> float32 -> raw augmentation -> the fitted
  preprocessing layers -> the augmentation layers -> mixing (all seeded from ``(seed, epoch)`` at
  each epoch start; their seed-generator states are checkpointed, so a resumed epoch continues
  the same crops) -> the network; it outputs the probabilities and the (mixed) targets side by
  side, so that the loss takes the soft targets and the accuracy the labels. Its
  ``compute_loss`` adds Caffe's L2, ``0.5 * value * sum(kernel**2)`` over the trained kernels (a
  ``kernel_regularizer`` cannot be attached to built layers, and would not skip frozen ones);
- input: a ``keras.utils.PyDataset`` of uint8 batches in ``permutation(seed, epoch)`` order (no
  ``tf.data``); a resumed epoch starts at the first batch not yet trained on;
- one ``fit`` call per epoch (or the part of it left): between calls the rate table, the freeze
  plan and the augmentation seeds change, and the epoch's validation runs;
- learning rate: a ``LearningRateSchedule`` reading this epoch's per-step rates from an optimizer
  variable indexed by the optimizer's step counter. The table is refilled from
  ``nin_keras.train.schedules`` before each epoch, so every schedule (the plateau rule included,
  which needs the epoch's metrics) gives the TensorFlow loop's rates, and it is optimizer state:
  inside the compiled step, in the checkpoint;
- a callback after each step: the weight average (``WeightAverage``, the same update as on
  TensorFlow, bias warm-up and batch-norm statistics included; the optimizer's ``use_ema`` has
  neither), checkpoints every N steps, the progress bar, and the divergence check (at every
  checkpoint and epoch end, and every step while a progress bar shows);
- a frozen body (``FreezePlan``): the frozen layers are set non-trainable and the model compiled
  with an optimizer built over the trained variables, Keras's own transfer-learning recipe (JAX's
  ``fit`` applies an optimizer to exactly the variables it was built on, so the optimizer of the
  frozen epochs is not the one of the later ones, unlike the TensorFlow loop's single optimizer);
- ``--strategy data_parallel``: ``keras.distribution.DataParallel`` set while the model is built
  and trained; each process feeds its slice of every global batch. The fitted preprocessing
  layers were made before it was set, so the run trains on copies made under it
  (``replicated_copies``).
"""

from __future__ import annotations

import contextlib
import functools
import time
from typing import Any

import keras
import numpy as np

from nin_keras.train import strategy as strategy_lib
from nin_keras.train.checkpoint import read_state, weights_digest
from nin_keras.train.components import build_augmentation, build_optimizer, create_network, is_decayed
from nin_keras.train.ema import WeightAverage
from nin_keras.train.recipes import Recipe
from nin_keras.train.run_state import (CHECKPOINT, RunInputs, RunOutcome, RunSettings, RunState, check_epoch,
                                       check_one_checkpoint, diverged, epoch_row, float32_network, print_row)
from nin_keras.train.schedules import make_schedule


def permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """This epoch's example order: a function of ``(seed, epoch)`` only, so a resume reproduces it."""
    return np.random.default_rng([seed, epoch]).permutation(n)


class EpochBatches(keras.utils.PyDataset):
    """``count`` batches of one epoch from batch ``first`` on: ``((uint8 images, one-hot labels),
    one-hot labels)`` (the training model mixes the labels it is given with the images).

    Args:
        images, labels: the training arrays.
        order: the epoch's permutation.
        batch_size: the global batch.
        first: the first batch (a resumed epoch skips those already trained on).
        count: how many batches.
        classes: label width.
        shard: ``(process index, processes)``: each process yields its slice of a global batch.
    """

    def __init__(self, images, labels, order, batch_size, first, count, classes, shard=(0, 1)):
        super().__init__()
        self.images, self.labels, self.order = images, labels, order
        self.batch_size, self.first, self.count, self.classes = batch_size, first, count, classes
        self.shard = shard

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int):
        if not 0 <= index < self.count:
            raise IndexError(index)
        start = (self.first + index) * self.batch_size
        rows = self.order[start:start + self.batch_size]
        process, processes = self.shard
        local = self.batch_size // processes
        rows = rows[process * local:(process + 1) * local]
        one_hot = np.eye(self.classes, dtype="float32")[self.labels[rows]]
        return (self.images[rows], one_hot), one_hot


class TrainingModel(keras.Model):
    """Preprocessing, augmentation and network as one model whose loss carries Caffe's L2.

    ``l2`` is the coefficient: ``0.5 * l2 * sum(kernel**2)`` over the trainable kernels
    (``is_decayed``) is added to the loss, so each kernel's gradient gains ``l2 * kernel``.
    """

    l2 = 0.0

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
        kernels = [v for v in self.trainable_weights if is_decayed(v)]
        if self.l2 and kernels:
            penalty = sum(keras.ops.sum(keras.ops.square(keras.ops.cast(v, "float32"))) for v in kernels)
            loss = loss + 0.5 * self.l2 * penalty
        return loss


def training_model(network: keras.Model, preprocess, augmentation, image_shape: tuple, l2: float) -> TrainingModel:
    """(uint8 images, one-hot labels) -> float32 -> ``augmentation.raw`` -> ``preprocess`` ->
    ``augmentation.augment`` -> ``augmentation.mixing`` -> ``network`` -> ``[float32 probabilities,
    targets]`` concatenated (mixed-precision networks output their compute dtype; ``split``)."""
    classes = int(network.output_shape[-1])
    images, targets = keras.Input(image_shape, dtype="uint8"), keras.Input((classes,))
    x = keras.ops.cast(images, "float32")
    for layer in [*augmentation.raw, *preprocess, *augmentation.augment]:
        x = layer(x)
    if augmentation.mixing is not None:
        x, targets_out = augmentation.mixing([x, targets])
    else:
        targets_out = targets
    outputs = keras.ops.concatenate([keras.ops.cast(network(x), "float32"), targets_out], axis=-1)
    model = TrainingModel([images, targets], outputs)
    model.l2 = l2
    return model


def replicated_copies(layers, image_shape: tuple) -> list:
    """Copies of the fitted ``layers`` made under the current distribution, state included.

    A variable lives where it was created: one made before ``keras.distribution.set_distribution``
    sits on one device, and JAX does not compile a step that mixes it with the mesh's replicated
    variables (preprocessing with state: ZCA's matrix, ``Normalization``'s moments). The copy is
    Keras's own saving path: the class from its config, built on the same shape, the variables
    through ``save_own_variables`` / ``load_own_variables`` (which finish ``Normalization``'s state).
    """
    copies, shape = [], (None, *image_shape)
    for layer in layers:
        copy = type(layer).from_config(layer.get_config())
        copy.build(shape)
        store: dict = {}
        layer.save_own_variables(store)
        # As values: a variable assigned from the other's array would share its buffer, which
        # the compiled step donates, deleting the original's.
        copy.load_own_variables({key: keras.ops.convert_to_numpy(value) for key, value in store.items()})
        copies.append(copy)
        shape = layer.compute_output_shape(shape)
    return copies


def split(outputs):
    """The training model's output as ``(probabilities, targets)``."""
    classes = outputs.shape[-1] // 2
    return outputs[..., :classes], outputs[..., classes:]


def soft_target_loss(smoothing: float):
    """Categorical crossentropy of the probabilities against the training model's own (mixed,
    then smoothed) targets; the labels ``fit`` passes are ignored."""
    def loss(labels, outputs):
        probabilities, targets = split(outputs)
        return keras.losses.categorical_crossentropy(targets, probabilities, label_smoothing=smoothing)
    return loss


def label_accuracy(labels, outputs):
    """Accuracy on the original (one-hot) labels."""
    return keras.metrics.categorical_accuracy(labels, split(outputs)[0])


def inference_model(network: keras.Model, preprocess, image_shape: tuple) -> keras.Model:
    images = keras.Input(image_shape, dtype="uint8")
    x = keras.ops.cast(images, "float32")
    for layer in preprocess:
        x = layer(x)
    return keras.Model(images, keras.ops.cast(network(x), "float32"))


class EpochRates(keras.optimizers.schedules.LearningRateSchedule):
    """The rate of step ``s``: ``rates[s mod steps_per_epoch]``, ``rates`` an optimizer variable
    holding the current epoch's rates (refilled before each epoch)."""

    def __init__(self, steps_per_epoch: int):
        self.steps_per_epoch = steps_per_epoch
        self.rates = None

    def __call__(self, step):
        index = keras.ops.mod(keras.ops.cast(step, "int32"), self.steps_per_epoch)
        return keras.ops.take(self.rates, index)

    def get_config(self):
        return {"steps_per_epoch": self.steps_per_epoch}


def run_fit(recipe: Recipe, inputs: RunInputs, settings: RunSettings) -> RunOutcome:
    """``nin_keras.train.run.run`` on JAX and other non-TensorFlow backends."""
    distribution = strategy_lib.make_strategy(settings.strategy) if isinstance(settings.strategy, str) \
        else settings.strategy
    shard = strategy_lib.process_count()
    devices = len(distribution.device_mesh.devices.flatten()) if distribution is not None else 1
    if recipe.batch_size % devices:
        raise ValueError(f"batch_size {recipe.batch_size} must be a multiple of the {devices} devices of "
                         "--strategy data_parallel")
    check_one_checkpoint(settings.out_dir / CHECKPOINT, functools.partial(strategy_lib.gather_from_processes,
                                                                           distribution))
    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(distribution)
    try:
        return _FitRun(recipe, inputs, settings, shard, distribution).run()
    finally:
        keras.distribution.set_distribution(previous)


class _FitRun:
    """One run's models, optimizer, state and epochs (kept together so ``run`` reads top to bottom)."""

    def __init__(self, recipe: Recipe, inputs: RunInputs, settings: RunSettings, shard, distribution):
        self.recipe, self.inputs, self.settings, self.shard = recipe, inputs, settings, shard
        self.chief = shard[0] == 0
        self.verbose = settings.verbose if self.chief else 0
        self.strategy_name = type(distribution).__name__ if distribution is not None else "default"
        x_train = inputs.arrays[0]
        self.steps_per_epoch = len(x_train) // recipe.batch_size
        self.every = (recipe.checkpoint_every_steps if settings.checkpoint_every_steps is None
                      else settings.checkpoint_every_steps)
        keras.utils.set_random_seed(recipe.seed)
        self.network = create_network(inputs.network, recipe.policy)
        self.classes = int(self.network.output_shape[-1])
        augmentation = build_augmentation(recipe)
        self.augment = [*augmentation.augment, *augmentation.raw, *filter(None, [augmentation.mixing])]
        preprocess = replicated_copies(inputs.preprocess, x_train.shape[1:])
        self.model = training_model(self.network, preprocess, augmentation, x_train.shape[1:], recipe.weight_decay.l2)
        self.evaluator = inference_model(self.network, preprocess, x_train.shape[1:])
        self.average = (WeightAverage(self.network, recipe.ema.decay, recipe.ema.warmup)
                        if recipe.ema else None)
        self.schedule = make_schedule(recipe.schedule, recipe.optimizer.learning_rate, self.steps_per_epoch,
                                      recipe.epochs)
        self.state = RunState(recipe, settings.out_dir, self.chief)
        self.frozen: bool | None = None
        self.optimizer = None
        self.rates = EpochRates(self.steps_per_epoch)

    # -- pieces --------------------------------------------------------------------------------
    def groups(self) -> dict[str, list]:
        """Variables a checkpoint holds besides the network's and the optimizer's."""
        seeds = [v for layer in self.augment for v in layer.variables]
        groups = {"augmentation": seeds}
        if self.average is not None:
            groups["ema"] = self.average.variables
        return groups

    def set_phase(self, epoch: int) -> None:
        """Freeze or unfreeze the plan's layers for ``epoch``; on a change (or at the start),
        compile with an optimizer built over the variables that train."""
        plan = self.inputs.freeze
        frozen = plan is not None and plan.frozen(epoch)
        if frozen == self.frozen:
            return
        if plan is not None:
            for layer in self.network.layers:
                if layer.name in plan.layers:
                    layer.trainable = not frozen
            if self.verbose and (frozen or self.frozen is not None):
                print(f"Epoch {epoch + 1}: body {'frozen (classifier only)' if frozen else 'trains'}", flush=True)
        self.frozen = frozen
        config = {**self.recipe.optimizer.config, "learning_rate": self.rates}
        optimizer = build_optimizer(config, self.recipe.weight_decay, self.recipe.policy)
        optimizer.build(self.model.trainable_variables)
        inner = getattr(optimizer, "inner_optimizer", optimizer)
        self.rates.rates = inner.add_variable((self.steps_per_epoch,), name="learning_rates")
        loss = soft_target_loss(self.recipe.label_smoothing)
        self.model.compile(
            optimizer=optimizer,
            loss=loss,
            metrics=[keras.metrics.MeanMetricWrapper(label_accuracy, name="accuracy"),
                     keras.metrics.MeanMetricWrapper(loss, name="data_loss")],
        )
        self.optimizer = optimizer

    def seed_augmentation(self, epoch: int) -> None:
        """Restart the augmentation layers' random streams from ``(seed, epoch)``."""
        states = [v for layer in self.augment for v in layer.variables if "seed_generator_state" in v.path]
        seeds = np.random.default_rng([self.recipe.seed, epoch, 1]).integers(0, 2**31 - 1, size=len(states))
        for variable, seed in zip(states, seeds):
            variable.assign(np.array([seed, 0], dtype=variable.dtype))

    def evaluate(self, images: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        """Mean loss (no label smoothing) and accuracy, of the weight average when there is one;
        batches padded to the global batch so that every device gets an equal share."""
        batch = self.recipe.batch_size
        probabilities = []
        with self.average.applied() if self.average is not None else contextlib.nullcontext():
            for start in range(0, len(images), batch):
                chunk = images[start:start + batch]
                padded = np.concatenate([chunk, np.repeat(chunk[-1:], batch - len(chunk), axis=0)])
                out = keras.ops.convert_to_numpy(self.evaluator.predict_on_batch(padded))
                probabilities.append(np.asarray(out[:len(chunk)], np.float64))
        probabilities = np.concatenate(probabilities)
        picked = np.clip(probabilities[np.arange(len(labels)), labels], 1e-7, 1.0)
        return {"loss": float(-np.mean(np.log(picked))),
                "accuracy": float(np.mean(np.argmax(probabilities, -1) == labels))}

    def save(self) -> None:
        self.state.save(self.network, self.optimizer, self.groups(), self.schedule)

    # -- the run -------------------------------------------------------------------------------
    def resume(self):
        checkpoint = self.state.checkpoint
        # The optimizer of the checkpoint's phase must exist before its values are read.
        self.set_phase(read_state(checkpoint)["epoch"] if checkpoint.exists() else 0)
        return self.state.resume(self.network, self.optimizer, self.groups(), self.schedule, self.settings.verbose)

    def run(self) -> RunOutcome:
        resumed_from = self.resume()
        values = self.state.values
        extra = {"recipe": self.recipe.to_dict(), "command": self.settings.command, "strategy": self.strategy_name}
        x_train, y_train, x_val, y_val = self.inputs.arrays
        max_steps = self.settings.max_steps
        while self.state.more_to_train(max_steps):
            epoch, start = values["epoch"], values["step"]
            self.set_phase(epoch)
            if start == 0:
                self.seed_augmentation(epoch)
            self.rates.rates.assign(np.array([self.schedule.learning_rate(epoch, s)
                                              for s in range(self.steps_per_epoch)], "float32"))
            count = self.steps_per_epoch - start
            if max_steps is not None:
                count = min(count, max_steps - values["global_step"])
            batches = EpochBatches(x_train, y_train, permutation(self.recipe.seed, epoch, len(x_train)),
                                   self.recipe.batch_size, start, count, self.classes, self.shard)
            if self.verbose:
                print(f"Epoch {epoch + 1}/{self.recipe.epochs}", flush=True)
            steps = _Steps(self, epoch)
            self.model.fit(batches, epochs=1, verbose=0, shuffle=False, callbacks=[steps])
            if not np.isfinite(steps.loss()):
                raise diverged(steps.loss(), epoch, values["step"] - 1, steps.learning_rate, self.state.checkpoint)
            partial = steps.partial()
            if values["step"] < self.steps_per_epoch:  # stopped by max_steps inside the epoch
                values["partial"] = partial.tolist()
                self.save()
                if self.verbose:
                    print(flush=True)
                break
            check_epoch(partial, self.classes, self.network.weights, epoch, values["step"] - 1, steps.learning_rate,
                        self.state.checkpoint)
            validation = self.evaluate(x_val, y_val) if len(x_val) else None
            row = epoch_row(epoch, partial, validation, steps.learning_rate, *steps.elapsed())
            self.state.end_epoch(row, self.schedule, extra)
            if self.verbose:
                print_row(row)
            # The checkpoint holds the optimizer the next epoch starts with: a resume builds the
            # optimizer of the checkpoint's epoch, which after a freeze boundary is a new one.
            self.set_phase(values["epoch"])
            self.save()
        groups = self.groups()
        digest = weights_digest(self.network, [v for group in groups.values() for v in group])
        averaged = self.average.averaged_weights(self.network) if self.average is not None else None
        weights = [np.array(w) for w in self.network.get_weights()]
        keras.distribution.set_distribution(None)  # the published network lives on one device
        network = float32_network(self.inputs.network, weights)
        return RunOutcome(network, averaged, values["history"], digest, resumed_from, self.chief, extra)


class _Steps(keras.callbacks.Callback):
    """After each ``fit`` step: the weight average, the position, checkpoints, progress, and the
    divergence check. ``partial()`` is the epoch's running (loss sum, correct, count), the part
    trained before a resume included."""

    def __init__(self, run: _FitRun, epoch: int):
        super().__init__()
        self.run, self.epoch = run, epoch
        values = run.state.values
        self.start, self.saved = values["step"], np.array(values["partial"], np.float64)
        self.t0 = time.time() - values.get("partial_seconds", 0.0)
        self.cpu0 = time.process_time() - values.get("partial_cpu_seconds", 0.0)
        self.logs: dict[str, Any] = {}
        self.learning_rate = run.schedule.learning_rate(epoch, self.start)
        self.bar = (keras.utils.Progbar(run.steps_per_epoch, stateful_metrics=["loss", "accuracy", "lr"])
                    if run.verbose else None)

    def elapsed(self) -> tuple[float, float]:
        return time.time() - self.t0, time.process_time() - self.cpu0

    def partial(self) -> np.ndarray:
        done = (self.run.state.values["step"] - self.start) * self.run.recipe.batch_size
        if not done:
            return self.saved
        return self.saved + np.array([float(self.logs["data_loss"]) * done, float(self.logs["accuracy"]) * done, done])

    def loss(self) -> float:
        """The running mean of the training loss (L2 included) since this ``fit`` began."""
        return float(self.logs["loss"]) if self.logs else 0.0

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        run, values = self.run, self.run.state.values
        if run.average is not None:
            _ = self.model  # on JAX, reading ``model`` puts the step's weights into the variables
            run.average.update()
        step = self.start + batch
        self.logs = logs or {}
        self.learning_rate = run.schedule.learning_rate(self.epoch, step)
        seconds, cpu_seconds = self.elapsed()
        values.update(step=step + 1, global_step=values["global_step"] + 1, partial_seconds=seconds,
                      partial_cpu_seconds=cpu_seconds)
        checkpoint = run.every and (step + 1) % run.every == 0 and step + 1 < run.steps_per_epoch
        if self.bar is not None or checkpoint:
            if not np.isfinite(self.loss()):
                raise diverged(self.loss(), self.epoch, step, self.learning_rate, run.state.checkpoint)
            partial = self.partial()
            if self.bar is not None:
                self.bar.update(step + 1, [("loss", partial[0] / partial[2]), ("accuracy", partial[1] / partial[2]),
                                           ("lr", self.learning_rate)])
            if checkpoint:
                _ = self.model
                values["partial"] = partial.tolist()
                run.save()
