"""Fine-tune a preset on a folder of your own images: ``finetune(preset, data, out)``.

``data`` is a class-folder directory ``<class>/<image>`` (or ``train/``, ``test/`` and
``val/``/``valid/``/``validation/`` split folders of them), or a ``.tar.gz``/``.zip`` of one.
Images of any size and mode become the model's input through the preset's input policy
(``nin_keras.data.input_policy``). The pretrained body is reused and a new classifier with one
output per class folder goes on top: for a NIN, the last mlpconv keeps its first convolutions
and gets a new final 1x1 convolution with one map per class, feeding the global-average-pooling
head (``nin_keras.zoo.transfer.classifier_layer_names``).

The new classifier does not start from random weights: by default it is *fitted* in closed form
(``head="fit"``, ``nin_keras.train.head_fit``: a logistic regression on the pretrained body's
features), so that even ``epochs=0`` gives a usable model; ``head="preset"`` starts from the
preset's own class maps when every class folder is named after one of its classes. Measured on
the README's example (airplane, cat and ship, 100 CIFAR-10 JPEG-copy photos each, 30 held out):
a random start trained for the 8 optimizer steps of ``--epochs 2`` ended at 30% (chance); the
closed-form fit alone scores 96.7%.

The budget fits the data: a run shorter than ``min_steps`` optimizer steps is lengthened by
whole multiples of its epochs (the frozen-body epochs scale alike), and the plan is printed.
After training, a held-out accuracy that is not clearly above chance (``binomial_p_value``)
is reported in one line, and a run whose loss or weights become NaN or infinite stops with a
``TrainingError`` and writes no preset.

``out`` is written only if it is new, a preset this run wrote before (a rerun), or, with
``overwrite=True``, another preset folder; a folder holding anything else is never replaced, and
``out`` and ``run_dir`` may not overlap the training data.

Training runs in the library's run builder (``nin_keras.train.run.run``, which ``train`` uses too):
the arrays, the fitted preprocessing, the started network and the freeze plan go in as plain
values; the same progress bar, validation accuracy each epoch, atomic checkpoints every N steps
and at every epoch end, resume by rerunning the same call, mixed precision, and on TensorFlow
every ``tf.distribute`` strategy, on JAX ``keras.distribution`` data parallelism. The run's
checkpoint and metrics live in ``run_dir`` (default ``<out>.run``); the
result is a normal preset folder at ``out`` whose class names are the folder names, which
``nin-keras eval``, ``export`` and ``predict`` accept.

Example:
    >>> from nin_keras.train import finetune
    >>> result = finetune("nin_cifar10", "pets.zip", "pets_preset", epochs=3)
    >>> result.test_metrics["accuracy"], result.class_names
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

import keras
import numpy as np

from nin_keras.arguments import check_count
from nin_keras.data.arrays import fit_preprocessing
from nin_keras.data.image_folder import read_labelled_images
from nin_keras.errors import Argument, ArgumentError, DataError, OutputExistsError, PresetError
from nin_keras.evaluation import evaluate_model, preset_metrics
from nin_keras.train import head_fit
from nin_keras.train.checkpoint import weights_digest
from nin_keras.train.components import build_layers
from nin_keras.train.recipes import Recipe
from nin_keras.train.run import run
from nin_keras.train.run_state import CHECKPOINT, FreezePlan, NetworkStart, RunInputs, RunOutcome, RunSettings
from nin_keras.train.splits import stratified_holdout
from nin_keras.train.strategy import make_strategy

WHITENING = ("reuse", "refit")
#: How the new classifier starts: fitted in closed form, from the preset's class maps of the same
#: names, or from random weights.
HEADS = ("fit", "preset", "random")
DEFAULT_BATCH_SIZE = 64
#: Significance below which a held-out accuracy counts as clearly above chance.
CHANCE_LEVEL_P = 0.01
_VALIDATION_SPLITS = ("val", "valid", "validation")


@dataclasses.dataclass
class FinetuneResult:
    """What ``finetune`` returns.

    Attributes:
        preset_dir: the preset folder written (None on non-chief workers).
        run_dir: checkpoint and metrics folder.
        class_names: the class folder names, in label order.
        history: one dict of metrics per epoch (``val_accuracy`` among them).
        test_metrics: ``evaluate_model``'s dict on the held-out images (the ``test`` split, or
            the validation images when there is none) plus ``"measured_on"``.
        weights_digest: sha256 over the model's variables.
        resumed_from: ``{"epoch", "step"}`` of the checkpoint the run continued, or None.
    """

    preset_dir: Path | None
    run_dir: Path
    class_names: tuple[str, ...]
    history: list[dict[str, Any]]
    test_metrics: dict[str, Any] | None
    weights_digest: str
    resumed_from: dict[str, int] | None = None
    above_chance: bool | None = None


def finetune(
    preset: str | os.PathLike,
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    epochs: int = 5,
    learning_rate: float = 0.01,
    clip_norm: float = 1.0,
    batch_size: int | None = None,
    freeze_body_epochs: int = 0,
    freeze_body: bool = False,
    head: str = "fit",
    min_steps: int = 100,
    whitening: str = "reuse",
    validation_fraction: float = 0.1,
    augment: bool = True,
    pretrained: bool = True,
    mixed_precision: bool | str = False,
    strategy: Any = "default",
    seed: int = 0,
    run_dir: str | os.PathLike | None = None,
    max_steps: int | None = None,
    checkpoint_every_steps: int | None = None,
    command: str | None = None,
    overwrite: bool = False,
    workers: int | None = None,
    verbose: int = 1,
) -> FinetuneResult:
    """Fine-tune ``preset`` on the class folders in ``data``; write a preset folder at ``out``.

    Args:
        preset: zoo name (``"nin_cifar10"``, ``"nin_cifar10.fast"``) or preset folder.
        data: class-folder directory or ``.tar.gz``/``.zip`` archive (see the module docstring).
        out: the preset folder to write: a new folder, this run's own earlier preset, or (with
            ``overwrite``) another preset folder, replaced only once the new one is complete.
        epochs: epochs to train (rerun with more to continue a finished run); 0 writes the
            preset with the started classifier only (``head`` "fit" or "preset").
        learning_rate: peak rate of SGD with Nesterov momentum 0.9 on a cosine schedule with
            a warm-up of a fifth of an epoch.
        clip_norm: the largest global norm of a step's gradients (Keras's ``global_clipnorm``);
            0 turns clipping off. The published weights have no batch norm to absorb the first
            steps on images far from the preset's own: without a bound, saturated colour
            photos drove the loss from 0.7 to 48 in one epoch at the default rate.
        batch_size: images per step (default: ``DEFAULT_BATCH_SIZE``, or all training images
            when there are fewer).
        freeze_body_epochs: train only the classifier for this many first epochs.
        freeze_body: train only the classifier for the whole run.
        head: how the new classifier starts: ``"fit"`` (closed-form logistic regression on the
            body's features, ``head_fit``), ``"preset"`` (the preset's class maps of the class
            folders' names, which must all be among its classes) or ``"random"``.
        min_steps: the fewest optimizer steps a run takes; fewer planned steps lengthen the run
            by whole multiples of ``epochs`` (and of ``freeze_body_epochs``). 0 keeps ``epochs``.
        whitening: ``"reuse"`` the preset's fitted preprocessing (ZCA or channel statistics of
            its own data set), or ``"refit"`` it on the new training images.
        validation_fraction: share of the training images held out for validation (seeded,
            stratified by class: ``stratified_holdout``) when ``data`` has no validation split.
        augment: random translations (zero-pad 1/8 of the size, crop) and, for colour images,
            horizontal flips.
        pretrained: ``False`` trains the same network from random weights (the baseline a
            fine-tune is measured against).
        mixed_precision: ``False``, ``True`` (float16), ``"mixed_float16"`` or
            ``"mixed_bfloat16"``; the preset is float32 either way.
        strategy: ``"default"``; on TensorFlow ``"mirrored"``, ``"multiworker"`` or a strategy
            object; on JAX ``"data_parallel"`` (``nin_keras.train.strategy``).
        seed: seeds the hold-out, a random classifier's start, the data order, augmentation and dropout.
        run_dir: checkpoint and metrics folder (default: ``<out>.run`` beside ``out``).
        max_steps: stop after this many optimizer steps in total (a smoke test; rerun to go on).
        checkpoint_every_steps: also checkpoint every N steps inside an epoch (default 100).
        command: the command line recorded in the metadata.
        overwrite: replace ``out`` if it is a preset folder from another run.
        workers: processes decoding the images (``nin_keras.data.decode_pool``; the same arrays
            for any number): default one per usable CPU, up to ``MAX_DEFAULT_WORKERS``; 1: this
            process only.
        verbose: 1 prints the plan, the progress bar and epoch summaries.

    Returns:
        A :class:`FinetuneResult`.

    Raises:
        DataError: fewer than two class folders, an empty class folder, undecodable images
            (all listed), a class with fewer than two training images.
        ValueError: a bad argument (named), ``out`` or ``run_dir`` overlapping ``data``, or a
            resumed ``run_dir`` written with other settings.
        FileExistsError: ``out`` exists (another run's preset) and ``overwrite`` is False.
        PresetError: ``out`` exists and is not a preset folder, or the preset cannot be loaded.
        TrainingError: the loss or the weights became NaN or infinite (no preset is written).

    Example:
        >>> finetune("nin_cifar10", "flowers/", "flowers_nin", epochs=4, freeze_body_epochs=1)
    """
    from nin_keras.zoo.preset_loader import read_preset

    _check_arguments(epochs=epochs, learning_rate=learning_rate, clip_norm=clip_norm, batch_size=batch_size,
                     freeze_body_epochs=freeze_body_epochs, whitening=whitening, head=head, min_steps=min_steps,
                     validation_fraction=validation_fraction, seed=seed, max_steps=max_steps, workers=workers)
    out = Path(out)
    run_dir = Path(run_dir) if run_dir is not None else out.with_name(out.name + ".run")
    _check_outputs(out, run_dir, Path(data), overwrite)
    if isinstance(strategy, str):
        # Before loading the preset: tf.distribute's multi-worker collectives and JAX's processes
        # (keras.distribution.initialize) must be set up before the first computation.
        strategy = make_strategy(strategy)
    source = read_preset(preset)
    policy = source.input_policy
    if policy is None:
        raise ValueError(f"preset {preset!r} does not take fixed-size images; it cannot be fine-tuned on image files")
    found = read_labelled_images(data, policy=policy, min_classes=2, workers=workers)
    arrays, held_out, measured_on = _split(found, validation_fraction, seed)
    classes = len(found.class_names)
    if epochs == 0 and head == "random":
        raise ArgumentError(Argument("epochs", 0), " with ", Argument("head", "random"), " would publish an untrained "
                            "classifier; train for at least one epoch or start the classifier with ",
                            Argument("head", "fit"))
    if batch_size is None:
        batch_size = min(DEFAULT_BATCH_SIZE, len(arrays[0]))
    steps_per_epoch = len(arrays[0]) // batch_size
    if steps_per_epoch < 1 and epochs:
        raise ValueError(f"batch_size {batch_size} is larger than the {len(arrays[0])} training images")
    repeat = math.ceil(min_steps / (epochs * steps_per_epoch)) if epochs and min_steps else 1
    if verbose:
        print(_plan(len(arrays[0]), len(arrays[2]), batch_size, steps_per_epoch, epochs, freeze_body_epochs,
                    min_steps, repeat), flush=True)
    epochs, freeze_body_epochs = epochs * repeat, freeze_body_epochs * repeat

    recipe = {
        "name": f"finetune_{out.name}",
        "description": f"fine-tune {preset} on {data}",
        "model": {"name": source.architecture, "kwargs": {**source.kwargs, "classes": classes},
                  "from": os.fspath(preset), "pretrained": pretrained, "whitening": whitening,
                  "freeze_body_epochs": freeze_body_epochs, "freeze_body": freeze_body, "head": head},
        "dataset": {"name": "image_folder", "path": os.fspath(data), "class_names": list(found.class_names),
                    "train_examples": int(len(arrays[0])), "validation_examples": int(len(arrays[2]))},
        "validation": {"holdout_fraction": validation_fraction},
        "augmentation": _augmentation(policy) if augment else [],
        "optimizer": {"name": "sgd", "learning_rate": learning_rate, "momentum": 0.9, "nesterov": True,
                      **({"global_clipnorm": clip_norm} if clip_norm else {})},
        "weight_decay": {"value": 5e-4, "mode": "l2"},
        # A floor of a tenth of the peak: a short run must not spend its last steps at a zero rate.
        "schedule": {"name": "cosine", "warmup_epochs": min(0.2, epochs / 2), "final_fraction": 0.1},
        "epochs": epochs,
        "batch_size": batch_size,
        "seed": seed,
        "mixed_precision": mixed_precision,
        "checkpoint_every_steps": 100,
    }
    if whitening == "refit":
        preprocess = build_layers(source.metadata.get("preprocessing", []))
        fit_preprocessing(preprocess, arrays[0])
    else:
        preprocess = source.preprocessing
    # Seeded: a random classifier (or network, from scratch) is the same in every run with this
    # seed, and in every process of a data_parallel run, which must all start from one network.
    keras.utils.set_random_seed(seed)
    start = _new_classifier(source, classes, None, pretrained)
    if not (run_dir / CHECKPOINT).exists():  # a resumed run's checkpoint holds its classifier
        _start_classifier(start, head, source, found.class_names, preprocess, arrays, verbose)

    publish = _Publisher(source, preset, data, out, run_dir, found, policy, preprocess, held_out, measured_on,
                         recipe, command, verbose)
    if epochs == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        outcome = RunOutcome(start, None, [], weights_digest(start, []), None, True,
                             {"recipe": recipe, "command": command, "strategy": None})
    else:
        inputs = RunInputs(arrays, preprocess, NetworkStart(source.architecture, {**source.kwargs, "classes": classes},
                                                            start.get_weights()),
                           FreezePlan(frozenset(_body_layer_names(source)), None if freeze_body else freeze_body_epochs)
                           if freeze_body or freeze_body_epochs else None)
        settings = RunSettings(run_dir, strategy, max_steps, checkpoint_every_steps, command, verbose)
        outcome = run(Recipe.parse(recipe), inputs, settings)
    measured, preset_dir = publish(outcome) if outcome.chief else (None, None)
    above = None if measured is None else measured["chance_p_value"] < CHANCE_LEVEL_P
    return FinetuneResult(preset_dir, run_dir, found.class_names, outcome.history, measured, outcome.weights_digest,
                          outcome.resumed_from, above)


@dataclasses.dataclass
class _Publisher:
    """Measures a finished fine-tune on its held-out images and writes its preset (chief only)."""

    source: Any
    preset: Any
    data: Any
    out: Path
    run_dir: Path
    found: Any
    policy: Any
    preprocess: list
    held_out: tuple
    measured_on: str
    recipe: dict
    command: str | None
    verbose: int

    def __call__(self, outcome: RunOutcome) -> tuple[dict[str, Any], Path]:
        from nin_keras.train.history import write_history
        from nin_keras.zoo import save_preset

        classes = len(self.found.class_names)
        network = outcome.network
        measured = evaluate_model(_inference(network, self.preprocess), *self.held_out)
        measured["measured_on"] = self.measured_on
        measured["chance_p_value"] = binomial_p_value(round(measured["accuracy"] * measured["examples"]),
                                                      measured["examples"], 1 / classes)
        metadata = {
            # Prefixed: a folder named like a catalogued data set must not pass for it.
            "dataset": f"image_folder:{self.found.root.name.split('.')[0]}",
            "data_source": os.fspath(self.data),
            "class_names": list(self.found.class_names),
            "input_policy": self.policy.to_dict(),
            "metrics": preset_metrics(measured),
            "evaluated_on": self.measured_on,
            "fine_tuned_from": os.fspath(self.preset),
            "fine_tune_run": os.fspath(self.run_dir.resolve()),
            "command": self.command,
            "recipe": self.recipe,
            "epochs_trained": len(outcome.history),
            "history": outcome.history,
            "source": f"fine-tuned from {self.preset} with nin_keras.train.finetune",
            "license": self.source.metadata.get("license", ""),
            "paper_error": None,
        }
        preset_dir = save_preset(network, self.out, metadata, self.preprocess, overwrite=self.out.exists())
        write_history(self.run_dir, outcome.history, {**outcome.extra, "test": measured})
        if self.verbose:
            print(f"Held-out accuracy {100 * measured['accuracy']:.2f}% on {measured['examples']} images "
                  f"({self.measured_on}); preset written to {preset_dir}", flush=True)
        if measured["chance_p_value"] >= CHANCE_LEVEL_P:
            print(_chance_warning(measured, classes), flush=True)
        return measured, preset_dir


def binomial_p_value(correct: int, examples: int, chance: float) -> float:
    """``P(X >= correct)`` for ``X ~ Binomial(examples, chance)``: how likely guessing does as well.

    Computed exactly, in log space (``lgamma``), so it holds for any number of held-out images.
    """
    if correct <= 0:
        return 1.0
    log_chance, log_miss = math.log(chance), math.log1p(-chance)
    total = 0.0
    for k in range(correct, examples + 1):
        log_term = (math.lgamma(examples + 1) - math.lgamma(k + 1) - math.lgamma(examples - k + 1)
                    + k * log_chance + (examples - k) * log_miss)
        total += math.exp(log_term)
    return min(1.0, total)


def _chance_warning(measured: dict[str, Any], classes: int) -> str:
    """One line: at chance (the preset is worthless), or too few held-out images to tell."""
    correct = round(measured["accuracy"] * measured["examples"])
    figure = (f"held-out accuracy {100 * measured['accuracy']:.1f}% ({correct} of {measured['examples']}) is not "
              f"clearly above chance for {classes} classes ({100 / classes:.1f}%, p = {measured['chance_p_value']:.2g})")
    if measured["accuracy"] * classes <= 1.0 + 1.0 / classes:
        return (f"warning: {figure}: this preset is no better than guessing. Try more photos per class, more "
                "--epochs, a lower --learning-rate, --freeze-body, or --head fit.")
    return (f"warning: {figure}: {measured['examples']} held-out images are too few to tell it from guessing; hold "
            "out more (--validation-fraction, or a test/ folder of photos).")


def _check_arguments(*, epochs, learning_rate, clip_norm, batch_size, freeze_body_epochs, whitening, head, min_steps,
                     validation_fraction, seed, max_steps, workers) -> None:
    """Refuse out-of-range arguments by name; 0 never silently means a default."""
    for name, value in (("epochs", epochs), ("freeze_body_epochs", freeze_body_epochs), ("min_steps", min_steps),
                        ("seed", seed)):
        check_count(value, name, minimum=0)
    check_count(batch_size, "batch_size", optional=True)
    check_count(max_steps, "max_steps", optional=True)
    check_count(workers, "workers", optional=True)
    if seed >= 2**32:
        raise ArgumentError(Argument("seed"), f" must be below 2**32, got {seed!r}")
    if not (isinstance(learning_rate, (int, float)) and math.isfinite(learning_rate) and learning_rate > 0):
        raise ArgumentError(Argument("learning_rate"), f" must be a finite number > 0, got {learning_rate!r}")
    if not (isinstance(clip_norm, (int, float)) and math.isfinite(clip_norm) and clip_norm >= 0):
        raise ArgumentError(Argument("clip_norm"), f" must be a finite number >= 0 (0: no clipping), got {clip_norm!r}")
    if not (isinstance(validation_fraction, (int, float)) and 0.0 < validation_fraction < 1.0):
        raise ArgumentError(Argument("validation_fraction"), f" must be a number in (0, 1), got {validation_fraction!r}")
    for name, value, choices in (("whitening", whitening, WHITENING), ("head", head, HEADS)):
        if value not in choices:
            raise ArgumentError(Argument(name), f" must be one of {choices}, got {value!r}")


def _check_outputs(out: Path, run_dir: Path, data: Path, overwrite: bool) -> None:
    """Refuse outputs that would delete or mix with what the user did not ask to replace."""
    from nin_keras.zoo.preset_format import METADATA_FILE, is_preset_folder, read_preset_json

    data = data.resolve()
    for name, folder in (("out", out), ("run_dir", run_dir)):
        folder = folder.resolve()
        if folder.is_relative_to(data) or data.is_relative_to(folder):
            raise ValueError(f"{name} {folder} overlaps the training data {data}; write the fine-tuned preset "
                             "and its run folder outside the data")
    if run_dir.exists() and any(run_dir.iterdir()) and not (run_dir / CHECKPOINT).exists() \
            and not (run_dir / "metrics.json").exists():
        raise ValueError(f"run_dir {run_dir} exists and is not a fine-tune run folder (no {CHECKPOINT}); "
                         "choose another --run-dir or --out")
    if not out.exists() and not out.is_symlink():
        return
    if not is_preset_folder(out):
        raise PresetError(f"{out} exists and is not a preset folder; it is never replaced, even with --overwrite: "
                          "choose another --out")
    try:
        written_by = read_preset_json(out, METADATA_FILE).get("fine_tune_run")
    except (PresetError, AttributeError):
        written_by = None
    if written_by != os.fspath(run_dir.resolve()) and not overwrite:
        raise OutputExistsError(f"{out} is a preset from another run (pass ", Argument("overwrite", True),
                                " to replace it), or choose another folder for ", Argument("out"))


def _plan(train: int, validation: int, batch_size: int, steps_per_epoch: int, epochs: int,
          freeze_epochs: int, min_steps: int, repeat: int) -> str:
    """The run's plan in one line (printed before anything trains)."""
    planned = f"{epochs} epoch(s) of {steps_per_epoch} step(s) = {epochs * steps_per_epoch} optimizer steps"
    if epochs == 0:
        return f"Plan: {train} training and {validation} validation images; epochs 0: the started classifier only"
    if repeat > 1:
        planned += (f", fewer than the minimum of {min_steps} (--min-steps): training {epochs * repeat} epochs "
                    f"({epochs * repeat * steps_per_epoch} steps")
        planned += f", the first {freeze_epochs * repeat} with the body frozen)" if freeze_epochs else ")"
    return f"Plan: {train} training and {validation} validation images, batch {batch_size}: {planned}"


def _start_classifier(network, head: str, source, class_names, preprocess, arrays, verbose: int) -> None:
    """Give ``network``'s new classifier its starting weights (``head``: see ``finetune``)."""
    if head == "random":
        return
    if head == "preset":
        _copy_class_maps(network, source, class_names)
        if verbose:
            print(f"Classifier: the preset's class maps of {', '.join(class_names)}", flush=True)
        return
    x_train, y_train, x_val, y_val = arrays
    fit = head_fit.fit_classifier(network, preprocess, x_train, y_train)
    if verbose:
        held = evaluate_model(_inference(network, preprocess), x_val, y_val)["accuracy"] if len(x_val) else None
        shown = "" if held is None else f", validation {100 * held:.1f}%"
        print(f"Classifier: fitted in closed form (logistic regression, L2 {fit.l2:g} by 3-fold cross-validation: "
              f"{100 * fit.cross_validated_accuracy:.1f}%; training {100 * fit.train_accuracy:.1f}%{shown})",
              flush=True)


def _copy_class_maps(network, source, class_names) -> None:
    """Start the classifier from the preset's own last kernel and bias columns of the same classes."""
    known = {name.lower(): i for i, name in enumerate(source.class_names or [])}
    missing = [name for name in class_names if name.lower() not in known]
    if missing:
        raise ValueError(f"head='preset' needs every class folder named after a class of the preset; "
                         f"{missing} are not among {source.class_names}")
    if not (head_fit.supports(network) and head_fit.supports(source.model)):
        raise ValueError(f"head='preset' needs a NIN class-map convolution with biases or a dense softmax "
                         f"classifier; {source.architecture} has neither (use head='random')")
    columns = [known[name.lower()] for name in class_names]
    old_kernel, old_bias = [keras.ops.convert_to_numpy(w) for w in head_fit.classifier_weights(source.model)]
    kernel, bias = head_fit.classifier_weights(network)
    kernel.assign(old_kernel[..., columns])
    bias.assign(old_bias[columns])


def _split(found, validation_fraction: float, seed: int):
    """``(train/val arrays, held-out (images, labels), what the held-out images are)``."""
    splits = found.splits
    x_train, y_train = splits["train"] if "train" in splits else (None, None)
    if x_train is None:
        raise DataError(f"{found.root}: no training images (a 'train' split folder, or class folders "
                        f"directly; found splits {sorted(splits)})")
    validation = next((name for name in _VALIDATION_SPLITS if name in splits), None)
    if validation is not None:
        x_val, y_val = splits[validation]
    else:
        counts = np.bincount(y_train, minlength=len(found.class_names))
        thin = [found.class_names[c] for c in np.flatnonzero(counts < 2)]
        if thin:
            raise DataError(f"{found.root}: classes {thin} have fewer than two training images; a "
                            "validation image needs to be held out of each")
        count = max(len(counts), round(validation_fraction * len(y_train)))
        held = np.zeros(len(y_train), bool)
        held[stratified_holdout(y_train, count, seed)] = True
        x_train, y_train, x_val, y_val = x_train[~held], y_train[~held], x_train[held], y_train[held]
        validation = f"{count} training images held out (seeded, stratified)"
    if "test" in splits:
        return (x_train, y_train, x_val, y_val), splits["test"], f"{found.root} test split"
    return (x_train, y_train, x_val, y_val), (x_val, y_val), f"{found.root} validation ({validation})"


def _augmentation(policy) -> list[dict[str, Any]]:
    from nin_keras.layers import RandomPadCrop

    # A fixed name: an auto-numbered one would differ between processes and block the resume check.
    layer = RandomPadCrop(max(1, policy.size[0] // 8), horizontal_flip=policy.color_mode == "rgb",
                          name="augmentation")
    return [keras.saving.serialize_keras_object(layer)]


def _body_layer_names(source) -> list[str]:
    from nin_keras.zoo.transfer import classifier_layer_names

    top = classifier_layer_names(source.architecture, source.kwargs)
    return [layer.name for layer in source.model.layers if layer.name not in top]


def _new_classifier(source, classes: int, dtype_policy: str | None, pretrained: bool) -> keras.Model:
    """The preset's architecture with ``classes`` outputs; the body's weights copied when
    ``pretrained``, the classifier's fresh where its shapes changed."""
    from nin_keras.zoo import create_model, transfer_weights
    from nin_keras.zoo.transfer import classifier_layer_names

    arguments = {**source.kwargs, "classes": classes}
    previous = keras.config.dtype_policy()
    if dtype_policy:
        keras.config.set_dtype_policy(dtype_policy)
    try:
        model = create_model(source.architecture, **arguments)
    finally:
        keras.config.set_dtype_policy(previous)
    if pretrained:
        transfer_weights(source.model, model, classifier_layer_names(source.architecture, arguments))
    return model


def _inference(network: keras.Model, preprocess) -> keras.Model:
    from nin_keras.zoo import ImageClassifier

    return ImageClassifier(network, preprocess)
