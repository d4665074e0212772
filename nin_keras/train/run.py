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

from nin_keras.arguments import check_count
from nin_keras.train.recipes import Recipe
from nin_keras.train.run_state import NetworkStart, RunInputs, RunOutcome, RunSettings


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


