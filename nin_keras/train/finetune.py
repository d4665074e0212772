"""Fine-tune a preset on a folder of your own images: ``finetune(preset, data, out)``.

``data`` is a class-folder directory ``<class>/<image>`` (or ``train/``, ``test/`` and
``val/``/``valid/``/``validation/`` split folders of them), or a ``.tar.gz``/``.zip`` of one.
Images of any size and mode become the model's input through the preset's input policy
(``nin_keras.data.input_policy``). The pretrained body is reused and a new classifier with one
output per class folder goes on top: for a NIN, the last mlpconv keeps its first convolutions
and gets a new final 1x1 convolution with one map per class, feeding the global-average-pooling
head (``nin_keras.zoo.transfer.classifier_layer_names``).

Training runs in the library's one training loop (``nin_keras.train.loop.train``): the same
progress bar, validation accuracy each epoch, atomic checkpoints every N steps and at every
epoch end, resume by rerunning the same call, mixed precision and every ``tf.distribute``
strategy. The run's checkpoint and metrics live in ``run_dir`` (default ``<out>.run``); the
result is a normal preset folder at ``out`` whose class names are the folder names, which
``nin-keras eval``, ``export`` and ``predict`` accept.

Example:
    >>> from nin_keras.train import finetune
    >>> result = finetune("nin_cifar10", "pets.zip", "pets_preset", epochs=3)
    >>> result.test_metrics["accuracy"], result.class_names
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import keras
import numpy as np

from nin_keras.data.arrays import fit_preprocessing
from nin_keras.data.image_folder import read_labelled_images
from nin_keras.tensorflow_only import import_tensorflow
from nin_keras.errors import DataError
from nin_keras.train.evaluate import evaluate_model, preset_metrics
from nin_keras.train.components import build_layers
from nin_keras.train.loop import RunParts, train
from nin_keras.train.splits import stratified_holdout

tf = import_tensorflow(__name__)

WHITENING = ("reuse", "refit")
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


def finetune(
    preset: str | os.PathLike,
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    epochs: int = 5,
    learning_rate: float = 0.01,
    batch_size: int = 64,
    freeze_body_epochs: int = 0,
    freeze_body: bool = False,
    whitening: str = "reuse",
    validation_fraction: float = 0.1,
    augment: bool = True,
    pretrained: bool = True,
    mixed_precision: bool | str = False,
    strategy: str | tf.distribute.Strategy = "default",
    seed: int = 0,
    run_dir: str | os.PathLike | None = None,
    max_steps: int | None = None,
    checkpoint_every_steps: int | None = None,
    command: str | None = None,
    verbose: int = 1,
) -> FinetuneResult:
    """Fine-tune ``preset`` on the class folders in ``data``; write a preset folder at ``out``.

    Args:
        preset: zoo name (``"nin_cifar10"``, ``"nin_cifar10.fast"``) or preset folder.
        data: class-folder directory or ``.tar.gz``/``.zip`` archive (see the module docstring).
        out: the preset folder to write (replaced only once the new one is complete).
        epochs: epochs to train (rerun with more to continue a finished run).
        learning_rate: peak rate of SGD with Nesterov momentum 0.9 on a cosine schedule with
            a warm-up of a fifth of an epoch.
        batch_size: images per step.
        freeze_body_epochs: train only the classifier for this many first epochs.
        freeze_body: train only the classifier for the whole run.
        whitening: ``"reuse"`` the preset's fitted preprocessing (ZCA statistics of its own
            data set), or ``"refit"`` it on the new training images.
        validation_fraction: share of the training images held out for validation (seeded,
            stratified by class: ``stratified_holdout``) when ``data`` has no validation split.
        augment: random translations (zero-pad 1/8 of the size, crop) and, for colour images,
            horizontal flips.
        pretrained: ``False`` trains the same network from random weights (the baseline a
            fine-tune is measured against).
        mixed_precision: ``False``, ``True`` (float16), ``"mixed_float16"`` or
            ``"mixed_bfloat16"``; the preset is float32 either way.
        strategy: ``"default"``, ``"mirrored"``, ``"multiworker"`` or a strategy object.
        seed: seeds the hold-out, the data order, augmentation and dropout.
        run_dir: checkpoint and metrics folder (default: ``<out>.run`` beside ``out``).
        max_steps: stop after this many optimizer steps in total (a smoke test; rerun to go on).
        checkpoint_every_steps: also checkpoint every N steps inside an epoch (default 100).
        command: the command line recorded in the metadata.
        verbose: 1 shows the progress bar and epoch summaries.

    Returns:
        A :class:`FinetuneResult`.

    Raises:
        DataError: fewer than two class folders, an empty class folder, undecodable images
            (all listed), a class with fewer than two training images.
        ValueError: a bad argument (named), or a resumed ``run_dir`` written with other settings.
        PresetError, WeightsMismatchError: the preset cannot be loaded.

    Example:
        >>> finetune("nin_cifar10", "flowers/", "flowers_nin", epochs=4, freeze_body_epochs=1)
    """
    from nin_keras.zoo import load_preset

    if whitening not in WHITENING:
        raise ValueError(f"whitening must be one of {WHITENING}, got {whitening!r}")
    if not isinstance(freeze_body_epochs, int) or freeze_body_epochs < 0:
        raise ValueError(f"freeze_body_epochs must be a non-negative integer, got {freeze_body_epochs!r}")
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction!r}")
    source = load_preset(preset)
    policy = source.input_policy
    if policy is None:
        raise ValueError(f"preset {preset!r} does not take fixed-size images; it cannot be fine-tuned on image files")
    found = read_labelled_images(data, policy=policy, min_classes=2)
    arrays, held_out, measured_on = _split(found, validation_fraction, seed)
    classes = len(found.class_names)
    out = Path(out)
    run_dir = Path(run_dir) if run_dir is not None else out.with_name(out.name + ".run")

    recipe = {
        "name": f"finetune_{out.name}",
        "description": f"fine-tune {preset} on {data}",
        "model": {"name": source.architecture, "kwargs": {**source.kwargs, "classes": classes},
                  "from": os.fspath(preset), "pretrained": pretrained, "whitening": whitening,
                  "freeze_body_epochs": freeze_body_epochs, "freeze_body": freeze_body},
        "dataset": {"name": "image_folder", "path": os.fspath(data), "class_names": list(found.class_names),
                    "train_examples": int(len(arrays[0])), "validation_examples": int(len(arrays[2]))},
        "validation": {"holdout_fraction": validation_fraction},
        "augmentation": _augmentation(policy) if augment else [],
        "optimizer": {"name": "sgd", "learning_rate": learning_rate, "momentum": 0.9, "nesterov": True},
        "weight_decay": {"value": 5e-4, "mode": "l2"},
        "schedule": {"name": "cosine", "warmup_epochs": min(0.2, epochs / 2)},
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
    body = set(_body_layer_names(source))

    def build_model(input_shape, dtype_policy):
        return _new_classifier(source, classes, dtype_policy, pretrained)

    def before_epoch(epoch, loop):
        frozen = freeze_body or epoch < freeze_body_epochs
        changed = False
        for layer in loop.model.layers:
            if layer.name in body and layer.trainable == frozen:
                layer.trainable = not frozen
                changed = True
        if changed:
            loop.retrace()
            if loop.verbose:
                print(f"Epoch {epoch + 1}: body {'frozen (classifier only)' if frozen else 'trains'}", flush=True)

    def finish(model, average, history, extra):
        network = _float32(model, source, classes)
        measured = evaluate_model(_inference(network, preprocess), *held_out)
        measured["measured_on"] = measured_on
        metadata = {
            # Prefixed: a folder named like a catalogued data set must not pass for it.
            "dataset": f"image_folder:{found.root.name.split('.')[0]}",
            "data_source": os.fspath(data),
            "class_names": list(found.class_names),
            "input_policy": policy.to_dict(),
            "metrics": preset_metrics(measured),
            "evaluated_on": measured_on,
            "fine_tuned_from": os.fspath(preset),
            "command": command,
            "recipe": recipe,
            "epochs_trained": len(history),
            "history": history,
            "source": f"fine-tuned from {preset} with nin_keras.train.finetune",
            "license": source.metadata.get("license", ""),
            "paper_error": None,
        }
        from nin_keras.train.history import write_history
        from nin_keras.zoo import save_preset

        preset_dir = save_preset(network, out, metadata, preprocess, overwrite=True)
        write_history(run_dir, history, {**extra, "test": measured})
        if verbose:
            print(f"Held-out accuracy {100 * measured['accuracy']:.2f}% on {measured['examples']} images "
                  f"({measured_on}); preset written to {preset_dir}", flush=True)
        return measured, preset_dir

    result = train(recipe, run_dir, strategy=strategy, max_steps=max_steps,
                   checkpoint_every_steps=checkpoint_every_steps, command=command, verbose=verbose,
                   parts=RunParts(arrays, preprocess, build_model, finish, before_epoch))
    return FinetuneResult(result.preset_dir, run_dir, found.class_names, result.history,
                          result.test_metrics, result.weights_digest, result.resumed_from)


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


def _float32(model: keras.Model, source, classes: int) -> keras.Model:
    """The trained network as a float32 model (a preset is float32 whatever it trained in)."""
    from nin_keras.zoo import create_model

    network = create_model(source.architecture, **{**source.kwargs, "classes": classes})
    network.set_weights(model.get_weights())
    return network


def _inference(network: keras.Model, preprocess) -> keras.Model:
    from nin_keras.zoo import inference_model

    return inference_model(network, preprocess)
