"""Tests of nin_keras.train: schedules, recipes, a real short run, kill/resume, multi-worker, mixed precision.

The runs use ``maxout_mnist`` (a registered zoo model whose MLP costs 1.2 M multiply-adds per
image) on a slice of ``../shared/datasets/mnist.npz`` so that whole training processes take
seconds. Subprocess runs go through the real ``nin-keras train`` command line.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nin_keras.train import schedules
from nin_keras.train.recipes import list_recipes, load_recipe, validate_recipe

from conftest import DATASETS_DIR  # noqa: E402

MNIST = DATASETS_DIR / "mnist.npz"
needs_mnist = pytest.mark.skipif(not MNIST.exists(), reason=f"{MNIST} not present (no MNIST to train on)")

# 1,000 training images (200 more held out), batches of 50: 20 steps per epoch.
STEPS_PER_EPOCH = 20
CHECKPOINT_EVERY = 4


def tiny_recipe(**overrides) -> dict:
    recipe = load_recipe("maxout_mnist")
    recipe["dataset"] = {"name": "mnist", "source": "local", "train_examples": 1200, "test_examples": 500}
    recipe.update(
        name="maxout_mnist_tiny",
        validation={"holdout": 200},
        epochs=3,
        batch_size=50,
        schedule={"name": "cosine", "warmup_epochs": 0.5},
        checkpoint_every_steps=CHECKPOINT_EVERY,
    )
    recipe.update(overrides)
    return recipe


# --------------------------------------------------------------------------- schedules


def test_plateau_rule_matches_hand_computed_sequence():
    s = schedules.PlateauSchedule(0.1, patience=2, min_delta=0.01, min_fraction=0.01)
    accuracies = [0.50, 0.60, 0.605, 0.609, 0.70, 0.70, 0.70, 0.705, 0.75, 0.75, 0.75]
    # Hand-computed: best/wait per epoch; a wait of 2 divides the rate by 10 (floor 0.001),
    # and a plateau at the floor ends the run.
    #  e0 .50 best  e1 .60 best  e2 .605 w1  e3 .609 w2 -> 0.01   e4 .70 best
    #  e5 .70 w1    e6 .70 w2 -> 0.001 (floor)  e7 .705 w1 (gain < min_delta)  e8 .75 best
    #  e9 .75 w1    e10 .75 w2 at the floor -> stop
    expected_rates = [0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001, 0.001, 0.001, 0.001]
    expected_stop = [False] * 10 + [True]
    rates, stops = [], []
    for epoch, acc in enumerate(accuracies):
        s.on_epoch_end(epoch, {"accuracy": acc})
        rates.append(s.learning_rate(epoch + 1, 0))
        stops.append(s.should_stop())
    np.testing.assert_allclose(rates, expected_rates, rtol=1e-12)
    assert stops == expected_stop


def test_plateau_state_round_trip_and_bad_monitor():
    a = schedules.PlateauSchedule(0.1, patience=1)
    for epoch, acc in enumerate([0.5, 0.5, 0.6]):
        a.on_epoch_end(epoch, {"accuracy": acc})
    b = schedules.PlateauSchedule(0.1, patience=1)
    b.set_state(json.loads(json.dumps(a.get_state())))
    for epoch, acc in enumerate([0.6, 0.6], start=3):
        a.on_epoch_end(epoch, {"accuracy": acc})
        b.on_epoch_end(epoch, {"accuracy": acc})
        assert a.learning_rate(epoch, 0) == b.learning_rate(epoch, 0)
    with pytest.raises(ValueError, match="monitors 'accuracy'"):
        a.on_epoch_end(9, {"val_accuracy": 1.0})


def test_cosine_and_one_cycle_against_formulas():
    steps, epochs = 10, 4
    cos = schedules.CosineSchedule(0.2, steps, epochs, warmup_epochs=1, final_fraction=0.1)
    total = steps * epochs
    for k in range(total):
        t = (k + 1) / total
        want = 0.2 * t / 0.25 if t <= 0.25 else 0.02 + 0.5 * 0.18 * (1 + math.cos(math.pi * (t - 0.25) / 0.75))
        assert cos.learning_rate(k // steps, k % steps) == pytest.approx(want)
    one = schedules.OneCycleSchedule(1.0, steps, epochs, pct_start=0.25, div_factor=10, final_div_factor=100)
    assert one.learning_rate(0, 0) == pytest.approx(0.1)
    assert one.learning_rate(1, 0) == pytest.approx(1.0)
    assert one.learning_rate(epochs - 1, steps - 1) == pytest.approx(1.0 + (0.01 - 1.0) * (39 / 40 - 0.25) / 0.75)
    with pytest.raises(ValueError, match="schedule name 'step'"):
        schedules.make_schedule({"name": "step"}, 0.1, 10, 2)


# --------------------------------------------------------------------------- recipes


def test_every_zoo_recipe_is_valid_and_buildable():
    import keras

    from nin_keras.train.components import build_layers
    from nin_keras.zoo import list_models

    names = list_recipes()
    assert {"nin_cifar10", "nin_cifar100", "nin_svhn", "nin_mnist", "nin_mnist_fast",
            "nin_fashion_mnist_fast", "maxout_mnist", "nin_cifar10_fast"} <= set(names)
    for name in names:
        recipe = load_recipe(name)
        assert recipe["name"] == name
        assert recipe["model"]["name"] in list_models()
        for layer in build_layers(recipe.get("preprocessing", []) + recipe.get("augmentation", [])):
            assert isinstance(layer, keras.layers.Layer)
    paper = load_recipe("nin_cifar10")
    assert paper["optimizer"]["momentum"] == 0.9 and paper["batch_size"] == 128
    assert paper["schedule"]["name"] == "plateau" and paper["schedule"]["min_fraction"] == 0.01


def test_recipe_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="nin_mnist_fast"):
        load_recipe("nin_mnist_fsat")
    broken = {k: v for k, v in tiny_recipe().items() if k != "seed"}
    with pytest.raises(ValueError, match="seed"):
        validate_recipe(broken)
    with pytest.raises(ValueError, match="batch_size"):
        validate_recipe(tiny_recipe(batch_size=0))
    path = tmp_path / "r.json"
    path.write_text(json.dumps(tiny_recipe(optimiser={})))
    with pytest.raises(ValueError, match="optimiser"):
        load_recipe(path)


# --------------------------------------------------------------------------- checkpoints and data order


def _small_model(units: int = 4):
    import keras

    inputs = keras.Input((3,))
    x = keras.layers.Dense(units, name="dense")(inputs)
    x = keras.layers.Dropout(0.5, name="drop")(x)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="out")(x))


def test_checkpoint_round_trip_corruption_and_mismatch(tmp_path):
    import keras

    from nin_keras.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, weights_digest

    model, optimizer = _small_model(), keras.optimizers.SGD(0.1, momentum=0.9)
    optimizer.build(model.trainable_variables)
    optimizer.variables[-1].assign(np.full(optimizer.variables[-1].shape, 0.25))
    path = save_checkpoint(tmp_path / "c.npz", model, optimizer, {"epoch": 2, "history": [{"loss": 0.5}]})
    assert not list(tmp_path.glob(".c.npz.*"))  # the temporary was renamed into place

    copy, copy_optimizer = _small_model(), keras.optimizers.SGD(0.1, momentum=0.9)
    copy_optimizer.build(copy.trainable_variables)
    assert weights_digest(copy) != weights_digest(model)
    state = load_checkpoint(path, copy, copy_optimizer)
    assert state == {"epoch": 2, "history": [{"loss": 0.5}]}
    assert weights_digest(copy) == weights_digest(model)
    for a, b in zip(optimizer.variables, copy_optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(truncated, copy, copy_optimizer)
    wider, wider_optimizer = _small_model(units=5), keras.optimizers.SGD(0.1, momentum=0.9)
    wider_optimizer.build(wider.trainable_variables)
    with pytest.raises(CheckpointError, match="dense/kernel"):
        load_checkpoint(path, wider, wider_optimizer)


def test_checkpoint_without_its_state_or_a_variable_is_a_checkpoint_error(tmp_path):
    import keras

    from nin_keras.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

    model, optimizer = _small_model(), keras.optimizers.SGD(0.1)
    optimizer.build(model.trainable_variables)
    path = save_checkpoint(tmp_path / "c.npz", model, optimizer, {"epoch": 1})
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    before = [np.array(v) for v in model.get_weights()]
    for key, message in (("state", "no 'state' entry"), ("model/0001", "no 'model/0001' entry")):
        damaged = tmp_path / f"without-{key.replace('/', '-')}.npz"
        np.savez(damaged, **{k: v for k, v in arrays.items() if k != key})
        other = _small_model()
        other.set_weights(before)
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(damaged, other, optimizer)
        # Nothing was half-loaded: the checks run before the first assignment.
        for a, b in zip(other.get_weights(), before):
            np.testing.assert_array_equal(a, b)
    bad_json = tmp_path / "bad-state.npz"
    np.savez(bad_json, **{**arrays, "state": np.array("{not json")})
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(bad_json, model, optimizer)


def test_weight_average_matches_the_hand_computed_recurrence():
    import keras

    from nin_keras.train.ema import WeightAverage

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), keras.layers.BatchNormalization(),
                              keras.layers.Dropout(0.5, seed=1)])
    tracked = [v for v in model.variables if "float" in str(v.dtype)]
    assert len(tracked) == 6  # kernel, bias, gamma, beta, moving mean and variance; not the seed state
    rng = np.random.default_rng(0)
    for warmup, decay in ((False, 0.75), (True, 0.9)):
        average = WeightAverage(model, decay=decay, warmup=warmup)
        assert len(average.shadow) == 6
        expected = [np.array(v.numpy(), np.float64) for v in tracked]
        for t in range(1, 6):
            values = [rng.normal(size=v.shape) for v in tracked]
            for v, value in zip(tracked, values):
                v.assign(value)
            average.update()
            d = min(decay, (1 + t) / (10 + t)) if warmup else decay
            expected = [d * e + (1 - d) * value for e, value in zip(expected, values)]
        for shadow, e in zip(average.shadow, expected):
            np.testing.assert_allclose(shadow.numpy(), e, rtol=1e-5, atol=1e-6)
        last = [v.numpy().copy() for v in tracked]
        with average.applied():
            for v, e in zip(tracked, expected):
                np.testing.assert_allclose(v.numpy(), e, rtol=1e-5, atol=1e-6)
        for v, value in zip(tracked, last):
            np.testing.assert_array_equal(v.numpy(), value)  # swapped back exactly
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(model, decay=1.0)


def test_test_time_augmentation_against_hand_computed_views():
    import keras

    from nin_keras.evaluation import evaluate_model, predict_probabilities, translate

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(6, 5, 4, 1)).astype(np.uint8)
    weights = rng.normal(size=(20, 3)) / 50
    model = keras.Sequential([keras.Input((5, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    model.layers[-1].set_weights([weights, np.zeros(3)])

    def softmax_of(batch):
        logits = batch.reshape(len(batch), -1).astype(np.float64) @ weights
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    # Shifts by hand: content moves down/right, the border mirrors the edge (without repeating it).
    moved = translate(images, 2, 2)
    assert moved[0, 2, 2, 0] == images[0, 0, 0, 0] and moved[0, 4, 3, 0] == images[0, 2, 1, 0]
    assert moved[0, 0, 0, 0] == images[0, 2, 2, 0] and moved[0, 1, 2, 0] == images[0, 1, 0, 0]
    back = translate(images, -2, -2)
    assert back[0, 0, 0, 0] == images[0, 2, 2, 0] and back[0, 4, 3, 0] == images[0, 2, 1, 0]

    def shifted(batch, d):
        pad = np.pad(batch, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect")
        return pad[:, 2 - d: 7 - d, 2 - d: 6 - d]

    mirrored = images[:, :, ::-1]
    expected_flip = (softmax_of(images) + softmax_of(mirrored)) / 2
    expected_full = sum(0.25 * softmax_of(v) + 0.125 * softmax_of(shifted(v, 2)) + 0.125 * softmax_of(shifted(v, -2))
                        for v in (images, mirrored))
    np.testing.assert_allclose(predict_probabilities(model, images), softmax_of(images), rtol=1e-5)
    np.testing.assert_allclose(predict_probabilities(model, images, tta="flip"), expected_flip, rtol=1e-5)
    np.testing.assert_allclose(predict_probabilities(model, images, tta="flip_translate"), expected_full, rtol=1e-5)
    labels = np.argmax(expected_full, axis=1)
    result = evaluate_model(model, images, labels, tta="flip_translate")
    assert result["accuracy"] == 1.0 and result["tta"] == "flip_translate"
    with pytest.raises(ValueError, match="tta"):
        predict_probabilities(model, images, tta="rotate")


def test_epoch_pipeline_is_seeded_and_a_resumed_epoch_sees_the_same_batches():
    import keras
    import tensorflow as tf

    from nin_keras.train.components import build_layers
    from nin_keras.train.loop import _Loop

    recipe = tiny_recipe(batch_size=4)
    recipe["augmentation"] = [{"module": "nin_keras.layers", "class_name": "RandomPadCrop",
                               "config": {"padding": 2}, "registered_name": "nin_keras>RandomPadCrop"}]
    # Raw-pixel augmentation and MixUp/CutMix are seeded per epoch too, and survive a resume.
    recipe["raw_augmentation"] = [{"module": "keras.layers", "class_name": "RandomBrightness",
                                   "config": {"factor": 0.2}, "registered_name": None}]
    recipe["mixing"] = {"mixup_alpha": 0.8, "cutmix_alpha": 1.0}
    model, optimizer = _small_model(), keras.optimizers.SGD(0.1)
    preprocess = build_layers(recipe["preprocessing"])
    loop = _Loop(recipe, tf.distribute.get_strategy(), model, optimizer, None, preprocess, verbose=0)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20, 8, 8, 1), dtype=np.uint8)
    labels = np.arange(20, dtype=np.int64)

    def batches(epoch, skip=0):
        return [(x.numpy(), t.numpy(), y.numpy()) for x, t, y in loop.dataset(images, labels, epoch, skip=skip)]

    first = batches(epoch=1)
    assert len(first) == 5 and sorted(np.concatenate([y for _, _, y in first])) == list(range(20))
    again, resumed, other = batches(epoch=1), batches(epoch=1, skip=2), batches(epoch=2)
    for a, b in zip(first, again):
        for part_a, part_b in zip(a, b):
            np.testing.assert_array_equal(part_a, part_b)
    for a, b in zip(first[2:], resumed):
        for part_a, part_b in zip(a, b):  # same order, the same random crops and the same mixing
            np.testing.assert_array_equal(part_a, part_b)
    assert not all(np.array_equal(ya, yb) for (_, _, ya), (_, _, yb) in zip(first, other))
    # The crops are real: some batch differs from the merely rescaled images.
    assert any(not np.allclose(x, images[y] / 255.0) for x, _, y in first)
    # The targets are soft (mixed with the reversed batch); the labels stay the original ones.
    assert any(((targets > 0) & (targets < 1)).any() for _, targets, _ in first)


def test_l2_weight_decay_is_caffe_style_and_decoupled_decay_skips_biases():
    import keras
    import tensorflow as tf

    from nin_keras.train.components import build_layers, build_optimizer
    from nin_keras.train.loop import _Loop

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (8, 2, 2, 1), dtype=np.uint8)
    labels = rng.integers(0, 2, 8).astype(np.int64)

    def one_step(weight_decay):
        keras.utils.set_random_seed(3)
        inputs = keras.Input((2, 2, 1))
        model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs)))
        recipe = tiny_recipe(batch_size=8, weight_decay=weight_decay, loss={"label_smoothing": 0.0})
        optimizer = build_optimizer({"name": "sgd", "learning_rate": 0.5}, weight_decay)
        optimizer.build(model.trainable_variables)
        loop = _Loop(recipe, tf.distribute.get_strategy(), model, optimizer, None, build_layers(recipe["preprocessing"]), 0)
        before = [np.asarray(v) for v in model.trainable_variables]
        loop.train_step(next(iter(loop.dataset(images, labels, epoch=0))), 0.5)
        return before, [np.asarray(v) for v in model.trainable_variables]

    (w0, b0), (w_plain, b_plain) = one_step({"value": 0.0, "mode": "l2"})
    _, (w_l2, b_l2) = one_step({"value": 0.1, "mode": "l2"})
    _, (w_dec, b_dec) = one_step({"value": 0.1, "mode": "decoupled"})
    # Caffe: w <- w - lr * (grad + wd * w); biases are not decayed.
    np.testing.assert_allclose(w_l2, w_plain - 0.5 * 0.1 * w0, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(b_l2, b_plain, rtol=1e-6)
    # Decoupled (SGDW): w <- w - lr * wd * w - lr * grad, also skipping biases.
    np.testing.assert_allclose(w_dec, w_plain - 0.5 * 0.1 * w0, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(b_dec, b_plain, rtol=1e-6)
    assert isinstance(build_optimizer({"name": "sgd", "learning_rate": 0.1}, None, "mixed_float16"),
                      keras.optimizers.LossScaleOptimizer)
    assert not isinstance(build_optimizer({"name": "sgd", "learning_rate": 0.1}, None, "mixed_bfloat16"),
                          keras.optimizers.LossScaleOptimizer)
    with pytest.raises(ValueError, match="bad optimizer 'sgd'"):
        build_optimizer({"name": "sgd", "learning_rate": 0.1, "momentom": 0.9}, None)


def test_training_arrays_splits_and_holdout(monkeypatch):
    from nin_keras.train import splits

    def fake_load(dataset, split, data_dir=None):
        n = {"train": 10, "extra": 5, "valid": 3}[split]
        offset = {"train": 0, "extra": 100, "valid": 200}[split]
        return np.zeros((n, 2, 2, 1), np.uint8), np.arange(offset, offset + n, dtype=np.int64)

    monkeypatch.setattr(splits, "load_arrays", fake_load)
    _, y_train, _, y_val = splits.training_arrays(tiny_recipe(validation={"holdout": 4}))
    assert len(y_val) == 4 and sorted([*y_train, *y_val]) == list(range(10))
    svhn_like = tiny_recipe(validation={"split": "valid"})
    svhn_like["dataset"]["train_splits"] = ["train", "extra"]
    _, y_train, _, y_val = splits.training_arrays(svhn_like)
    assert list(y_train) == list(range(10)) + list(range(100, 105)) and list(y_val) == [200, 201, 202]
    _, y_train, x_val, _ = splits.training_arrays(tiny_recipe(validation={}))
    assert len(y_train) == 10 and len(x_val) == 0
    with pytest.raises(ValueError, match="holdout"):
        splits.training_arrays(tiny_recipe(validation={"holdout": 10}))


def test_holdout_is_stratified_and_seeded_even_when_the_source_lists_class_by_class():
    from nin_keras.train.splits import stratified_holdout

    labels = np.repeat(np.arange(10), [500] * 9 + [300])  # sorted by class, one smaller class
    held = stratified_holdout(labels, 480, seed=1)
    assert len(held) == 480 and len(np.unique(held)) == 480
    counts = np.bincount(labels[held], minlength=10)
    expected = 480 * np.bincount(labels) / len(labels)  # 50.5 per class, 30.3 for the last
    assert np.all(np.abs(counts - expected) < 1), counts
    assert np.array_equal(held, stratified_holdout(labels, 480, seed=1))
    assert not np.array_equal(held, stratified_holdout(labels, 480, seed=2))
    assert len(stratified_holdout(labels, 0, seed=1)) == 0


def test_a_run_is_set_beside_the_paper_error_of_its_own_data_set_only():
    """The architecture's paper error goes with its data set: NIN CIFAR-10 trained on
    Fashion-MNIST has none (issue 29's wide Fashion run printed 'paper: 10.41%'); a recipe's own
    ``paper`` figure wins."""
    from nin_keras.train.recipes import Recipe
    from nin_keras.train.run_preset import paper_error_of
    from nin_keras.zoo import get_model_entry

    cifar = get_model_entry("nin_cifar10")
    base = {key: value for key, value in load_recipe("nin_cifar10_fast").items() if key != "paper"}
    on_cifar = Recipe.parse(base)
    on_fashion = Recipe.parse({**base, "dataset": {"name": "fashion_mnist"}})
    with_paper = Recipe.parse({**base, "dataset": {"name": "fashion_mnist"}, "paper": {"test_error": 7.5}})
    assert paper_error_of(on_cifar, cifar) == pytest.approx(10.41)
    assert paper_error_of(on_fashion, cifar) is None
    assert paper_error_of(with_paper, cifar) == 7.5


# --------------------------------------------------------------------------- in-process runs


@needs_mnist
def test_short_training_improves_accuracy_and_writes_everything(tmp_path):
    from nin_keras.train import evaluate_preset, train

    result = train(tiny_recipe(), tmp_path, verbose=0, command="pytest")
    history = result.history
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert history[-1]["val_accuracy"] > max(0.5, history[0]["val_accuracy"])
    assert history[-1]["loss"] < history[0]["loss"]
    assert result.test_metrics["accuracy"] > 0.6  # chance is 0.1
    rows = (tmp_path / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 4 and rows[0].startswith("epoch,loss,accuracy,val_loss,val_accuracy")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["command"] == "pytest" and len(metrics["history"]) == 3
    for png in ("curves.png", "time_to_accuracy.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The preset's inference model (raw uint8 in) reproduces the recorded test number.
    again = evaluate_preset(result.preset_dir, data_dir=None, source="local", limit=500)
    assert again["accuracy"] == pytest.approx(result.test_metrics["accuracy"])
    meta = json.loads((result.preset_dir / "metadata.json").read_text())
    assert meta["command"] == "pytest" and meta["paper_error"] == 0.94
    assert meta["metrics"]["test_error"] == pytest.approx(result.test_metrics["error_percent"], abs=1e-3)
    # Rerunning with a larger epoch count extends the finished run instead of starting over.
    longer = train(tiny_recipe(epochs=4, description="longer"), tmp_path, verbose=0)
    assert longer.resumed_from == {"epoch": 3, "step": 0}
    assert [row["epoch"] for row in longer.history] == [1, 2, 3, 4]
    assert longer.history[:3] == history


@needs_mnist
@pytest.mark.parametrize("mixed_precision", [True, "mixed_bfloat16"])
def test_mixed_precision_under_mirrored_strategy_runs_on_cpu(tmp_path, mixed_precision):
    import keras

    from nin_keras.train import train
    from nin_keras.zoo import load_preset

    result = train(tiny_recipe(epochs=1, mixed_precision=mixed_precision), tmp_path, strategy="mirrored", verbose=0)
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    assert np.isfinite(result.history[0]["loss"])
    state = np.load(tmp_path / "checkpoint.npz")
    paths = [str(p) for p in state["optimizer_paths"]]
    # float16 needs loss scaling, and its state is checkpointed; bfloat16 has float32's range.
    assert any(p.endswith("/dynamic_scale") for p in paths) == (mixed_precision is True)
    assert load_preset(result.preset_dir).model.dtype_policy.name == "float32"


@pytest.mark.parametrize("value", ["bfloat16", 1, ["mixed_bfloat16"]])
def test_recipe_rejects_an_unknown_mixed_precision_policy(value):
    from nin_keras.train.recipes import validate_recipe

    with pytest.raises(ValueError, match="'mixed_precision' must be one of"):
        validate_recipe(tiny_recipe(mixed_precision=value))


@needs_mnist
def test_resume_rejects_a_different_recipe(tmp_path):
    from nin_keras.train import train

    train(tiny_recipe(epochs=1), tmp_path, verbose=0, max_steps=2)
    with pytest.raises(ValueError, match="batch_size"):
        train(tiny_recipe(epochs=1, batch_size=40), tmp_path, verbose=0)


# --------------------------------------------------------------------------- subprocess runs

# Runs ``nin-keras`` in a child; NIN_TEST_HANG=step:K or save:K makes the child stop dead after
# its K-th optimizer step, or halfway through writing its K-th checkpoint, and wait there for
# the test's SIGKILL (a marker file says it got there).
CHILD = r"""
import io, os, sys, time
import numpy as np

def hang():
    open(os.environ["NIN_TEST_MARKER"], "w").close()
    while True:
        time.sleep(1)

mode = os.environ.get("NIN_TEST_HANG", "")
if mode.startswith("step:"):
    from nin_keras.train import loop
    at, calls, original = int(mode[5:]), [0], loop._Loop.train_step
    def train_step(self, batch, learning_rate):
        out = original(self, batch, learning_rate)
        calls[0] += 1
        if calls[0] == at:
            hang()
        return out
    loop._Loop.train_step = train_step
elif mode.startswith("save:"):
    at, calls, real = int(mode[5:]), [0], np.savez
    def savez(f, **arrays):
        calls[0] += 1
        if calls[0] < at:
            return real(f, **arrays)
        buffer = io.BytesIO()
        real(buffer, **arrays)
        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        f.flush()
        hang()
    np.savez = savez

from nin_keras.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _env(**extra) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _train_command(recipe_path: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-c", CHILD, "train", str(recipe_path), "--out", str(out), "--quiet", *extra]


def _digest(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("weights digest: ")]
    assert lines, output[-3000:]
    return lines[-1].split(": ")[1]


def _run_until_hang(command: list[str], marker: Path, env: dict, timeout: float = 240) -> None:
    """Start ``command``, wait for it to reach its hang point, then kill -9 it."""
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + timeout
    while not marker.exists():
        if child.poll() is not None:
            pytest.fail(f"child exited with {child.returncode} before the kill point:\n{child.stdout.read()[-3000:]}")
        if time.time() > deadline:
            child.kill()
            pytest.fail("child never reached the kill point")
        time.sleep(0.1)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    marker.unlink()


def _checkpoint_state(out: Path) -> dict:
    with np.load(out / "checkpoint.npz") as data:
        return json.loads(str(data["state"]))


@needs_mnist
def test_kill_mid_epoch_and_mid_checkpoint_then_resume_matches_uninterrupted_run(tmp_path):
    recipe_path = tmp_path / "tiny.json"
    # With a weight average: its shadow and counter must resume too (they are in the digest).
    recipe_path.write_text(json.dumps(tiny_recipe(ema={"decay": 0.9, "warmup": True})))
    reference, resumed, marker = tmp_path / "reference", tmp_path / "resumed", tmp_path / "marker"

    # The uninterrupted reference run goes on beside the interrupted one.
    uninterrupted = subprocess.Popen(_train_command(recipe_path, reference), env=_env(),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    # 1. kill -9 in the middle of epoch 2 (after step 30; the last checkpoint is at step 28).
    command = _train_command(recipe_path, resumed)
    _run_until_hang(command, marker, _env(NIN_TEST_HANG="step:30", NIN_TEST_MARKER=str(marker)))
    state = _checkpoint_state(resumed)
    assert (state["epoch"], state["step"], state["global_step"]) == (1, 8, 28)
    assert 30 - state["global_step"] <= CHECKPOINT_EVERY
    assert len(state["history"]) == 1

    # 2. The same command resumes; kill -9 it halfway through writing its 2nd checkpoint
    #    (step 36): the file on disk is still the complete one from step 32.
    _run_until_hang(command, marker, _env(NIN_TEST_HANG="save:2", NIN_TEST_MARKER=str(marker)))
    state = _checkpoint_state(resumed)
    assert (state["epoch"], state["step"], state["global_step"]) == (1, 12, 32)
    assert list(resumed.glob(".checkpoint.npz.*.part*")), "the half-written temporary should be left behind"

    # 3. The same command again finishes the run.
    done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert not list(resumed.glob(".checkpoint.npz.*.part*"))
    final = _checkpoint_state(resumed)
    assert (final["epoch"], final["global_step"]) == (3, 3 * STEPS_PER_EPOCH)
    assert [row["epoch"] for row in final["history"]] == [1, 2, 3]

    out, _ = uninterrupted.communicate(timeout=300)
    assert uninterrupted.returncode == 0, out[-3000:]
    reference_state = _checkpoint_state(reference)
    # Same data order, dropout masks, optimizer state and schedule: the same run, bit for bit.
    assert _digest(done.stdout) == _digest(out)
    for a, b in zip(final["history"], reference_state["history"]):
        timing = {"seconds", "cpu_seconds"}
        assert {k: v for k, v in a.items() if k not in timing} == {k: v for k, v in b.items() if k not in timing}


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _two_workers(recipe_path: Path, out0: Path, out1: Path) -> list[tuple[int, str]]:
    """``train --strategy multiworker`` in two workers on loopback, ``--out out0`` and ``out1``:
    each worker's (exit code, output)."""
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    children = []
    for index, out in enumerate((out0, out1)):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        command = _train_command(recipe_path, out, "--strategy", "multiworker")
        children.append(subprocess.Popen(command, env=_env(TF_CONFIG=tf_config), stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, text=True))
    try:
        outputs = [child.communicate(timeout=300)[0] for child in children]
    except subprocess.TimeoutExpired:
        pytest.fail("multi-worker training did not finish")
    finally:
        for child in children:
            child.kill()
    return [(child.returncode, output) for child, output in zip(children, outputs)]


@needs_mnist
def test_two_worker_multiworker_run_on_loopback_agrees(tmp_path):
    recipe_path = tmp_path / "tiny.json"
    recipe_path.write_text(json.dumps(tiny_recipe(epochs=1)))
    out = tmp_path / "run"
    done = _two_workers(recipe_path, out, out)
    for code, output in done:
        assert code == 0, output[-3000:]
    assert _digest(done[0][1]) == _digest(done[1][1])
    state = _checkpoint_state(out)
    assert state["global_step"] == STEPS_PER_EPOCH and len(state["history"]) == 1
    assert (out / "preset" / "model.weights.h5").exists()  # written by the chief only
    # A worker that does not see the chief's folder would resume from nothing while the chief
    # resumes from its checkpoint (tf.distribute would not notice): each stops with one line.
    for code, output in _two_workers(recipe_path, out, tmp_path / "elsewhere"):
        assert code == 1 and f"did not find one checkpoint to resume from (in process order: step {STEPS_PER_EPOCH}, " \
                             "none;" in output, output[-3000:]


def test_preset_metrics_are_the_percentages_of_evaluate_model():
    import keras

    from nin_keras.evaluation import evaluate_model, preset_metrics

    model = keras.Sequential([keras.Input((1, 1, 1)), keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")])
    model.layers[-1].set_weights([np.array([[1.0, -1.0]], np.float32), np.zeros(2, np.float32)])
    images = np.array([1, 2, -1, -2, 3], np.float32).reshape(5, 1, 1, 1)
    labels = np.array([0, 0, 1, 0, 1])  # predicted 0, 0, 1, 1, 0: three of five right
    result = evaluate_model(model, images, labels, batch_size=2)
    assert result["accuracy"] == pytest.approx(0.6) and result["error_percent"] == pytest.approx(40.0)
    metrics = preset_metrics(result)
    assert metrics["test_accuracy"] == 60.0 and metrics["test_error"] == 40.0 and metrics["test_examples"] == 5
    assert metrics["test_loss"] == pytest.approx(result["loss"], abs=1e-6)


def test_confusion_matrix_against_a_hand_count_and_a_label_past_the_last_class():
    from nin_keras.evaluation import confusion_matrix

    labels = np.array([0, 0, 1, 2, 2, 2])
    predictions = np.array([0, 2, 1, 0, 0, 2])
    # class 0: once right, once taken for 2; class 1: right; class 2: twice taken for 0, once right
    assert confusion_matrix(labels, predictions, 3).tolist() == [[1, 0, 1], [0, 1, 0], [2, 0, 1]]
    with pytest.raises(ValueError, match=r"labels must be class indices in \[0, 3\), got 3"):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match=r"predictions must be class indices in \[0, 3\), got -1"):
        confusion_matrix(np.array([0, 1]), np.array([0, -1]), 3)
    with pytest.raises(ValueError, match=r"shapes \(2,\) and \(3,\)"):
        confusion_matrix(np.array([0, 1]), np.array([0, 1, 2]), 3)


def test_eval_per_class_counts_each_class_of_the_data_set_and_prints_its_accuracy(datasets_dir, capsys):
    """``nin-keras eval --per-class``: the confusion matrix's rows hold each class's images of the
    split (counted from the labels in the file itself), its diagonal the accuracy; the table prints
    each class's accuracy and most frequent mistake from it."""
    import re

    from nin_keras import cli

    limit = 300
    common = ["eval", "nin_mnist", "--limit", str(limit), "--data-dir", str(datasets_dir), "--per-class"]
    assert cli.main([*common, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    confusion = np.array(result["confusion"])
    with np.load(datasets_dir / "mnist.npz") as data:
        labels = data["y_test"][:limit]
    assert confusion.shape == (10, 10) and result["class_names"] == [str(digit) for digit in range(10)]
    assert confusion.sum(axis=1).tolist() == np.bincount(labels, minlength=10).tolist()
    assert np.trace(confusion) / limit == pytest.approx(result["accuracy"])
    assert result["published"] is not None  # still the preset's own data set

    assert cli.main(common) == 0
    rows = {m.group(1): m.groups()[1:] for m in re.finditer(
        r"^  (\d)\s+(\d+)\s+([\d.]+)%  (?:(\d) \((\d+) images\)|—)$", capsys.readouterr().out, re.M)}
    assert sorted(rows) == result["class_names"]
    for digit, (images, accuracy, taken_for, count) in rows.items():
        row = confusion[int(digit)]
        assert int(images) == row.sum() and float(accuracy) == round(100 * row[int(digit)] / row.sum(), 2)
        mistakes = np.delete(row, int(digit))
        if taken_for is None:
            assert mistakes.sum() == 0
        else:
            assert int(count) == mistakes.max() == row[int(taken_for)] and int(taken_for) != int(digit)


def test_eval_sets_the_paper_and_published_errors_beside_the_test_split_only(datasets_dir, capsys):
    """The published and paper errors are test-split figures: beside a training-split accuracy
    they would read as the same measurement."""
    from nin_keras import cli

    for split, shown in (("test", True), ("train", False)):
        assert cli.main(["eval", "nin_mnist", "--split", split, "--limit", "100",
                         "--data-dir", str(datasets_dir), "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["split"] == split and (result["published"] is not None) == shown
        assert (result["paper_error"] is not None) == shown
        assert cli.main(["eval", "nin_mnist", "--split", split, "--limit", "100", "--data-dir", str(datasets_dir)]) == 0
        assert ("published error" in capsys.readouterr().out) == shown


def test_evaluate_model_under_its_old_name_warns_and_is_the_same_function():
    import nin_keras.train
    from nin_keras.evaluation import evaluate_model

    with pytest.warns(DeprecationWarning, match="nin_keras.evaluation"):
        assert nin_keras.train.evaluate_model is evaluate_model
    assert "evaluate_model" not in nin_keras.train.__all__
