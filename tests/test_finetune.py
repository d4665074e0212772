"""Fine-tuning (``nin_keras.train.finetune``, ``head_fit``): the classifier's closed-form start, the
budget, the chance-level report, divergence, and the rules for what a fine-tune may write.

The photos are CIFAR-10 (JPEG copy) images blown up to photo sizes (``test_images`` helpers);
the README's own command runs in the slow test at the end.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from nin_keras.errors import PresetError, TrainingError
from nin_keras.train import head_fit
from nin_keras.train.finetune import binomial_p_value, finetune
from test_images import cifar_jpegs, photo, run_cli, write_class_folder

README = Path(__file__).resolve().parents[1] / "README.md"


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def flat_folder(root: Path, per_class: dict[str, int], split: str = "test") -> Path:
    """``root/<class>/<n>.jpg``: CIFAR-10 JPEG-copy images of ``split`` blown up to random sizes."""
    rng = np.random.default_rng(1)
    for name, files in cifar_jpegs(split, per_class).items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i, data in enumerate(files):
            photo(data, tuple(int(v) for v in rng.integers(40, 111, 2))).save(root / name / f"{i}.jpg", quality=90)
    return root


# --------------------------------------------------------------------------- the closed-form fit


def logistic_objective(w_and_b: np.ndarray, x: np.ndarray, y: np.ndarray, classes: int, l2: float) -> float:
    """The objective ``fit_logistic`` documents, written out independently on standardized features."""
    mean, scale = x.mean(0), x.std(0)
    xs = (x - mean) / scale
    w = w_and_b[: xs.shape[1] * classes].reshape(xs.shape[1], classes)
    b = w_and_b[xs.shape[1] * classes:]
    p = softmax(xs @ w + b)
    return float(-np.mean(np.log(p[np.arange(len(y)), y])) + l2 / 2 * np.sum(w**2))


def test_fit_logistic_reaches_the_minimum_a_general_optimizer_finds():
    from scipy.optimize import minimize

    rng = np.random.default_rng(0)
    classes, n, d = 3, 120, 6
    centres = rng.normal(size=(classes, d)) * 1.5
    y = rng.integers(0, classes, n)
    x = centres[y] + rng.normal(size=(n, d)) + 4.0  # offset and unequal scales: standardization matters
    x[:, 0] *= 30.0
    weights, bias = head_fit.fit_logistic(x, y, classes, l2=1e-2, iterations=5000, tolerance=1e-10)
    reference = minimize(logistic_objective, np.zeros(d * classes + classes), args=(x, y, classes, 1e-2),
                         method="L-BFGS-B", options={"maxiter": 5000, "gtol": 1e-10})
    mean, scale = x.mean(0), x.std(0)
    w_ref = reference.x[: d * classes].reshape(d, classes) / scale[:, None]
    b_ref = reference.x[d * classes:] - mean @ w_ref
    # The bias is unpenalized, so logits are fixed only up to one constant: compare probabilities.
    np.testing.assert_allclose(softmax(x @ weights + bias), softmax(x @ w_ref + b_ref), atol=1e-4)


def test_fitted_nin_classifier_computes_exactly_the_fitted_logits():
    """The shift keeps the last ReLU open on the training images, so the network's outputs are the
    regression's softmax; a random body and random images are enough to check that."""
    from nin_keras.models import nin_mnist

    keras.utils.set_random_seed(0)
    network = nin_mnist(classes=4, dropout=0.0)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (48, 28, 28, 1)).astype(np.uint8)
    labels = np.arange(48) % 4
    fit = head_fit.fit_classifier(network, [], images, labels)
    pooled = head_fit._pooled_features(network, [], images)
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in head_fit.classifier_weights(network))
    expected = softmax(pooled @ kernel.reshape(kernel.shape[-2:]) + bias)
    got = keras.ops.convert_to_numpy(network(images.astype("float32"), training=False))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert fit.shift > 0 and fit.l2 in head_fit.L2_GRID
    assert fit.train_accuracy == pytest.approx(np.mean(np.argmax(expected, 1) == labels))


def test_binomial_p_value_matches_scipy():
    from scipy.stats import binom

    for correct, examples, chance in ((11, 30, 1 / 3), (0, 10, 0.5), (30, 30, 1 / 3), (400, 1000, 0.1), (5, 5, 0.5)):
        assert binomial_p_value(correct, examples, chance) == pytest.approx(binom.sf(correct - 1, examples, chance),
                                                                            rel=1e-9, abs=1e-300)


# --------------------------------------------------------------------------- runs on a few photos


def test_epochs_zero_publishes_the_fitted_classifier_and_reports_it(tmp_path, capsys):
    data = write_class_folder(tmp_path / "pets", {"cat": (12, 4), "ship": (12, 4)})
    result = finetune("nin_cifar10", data, tmp_path / "pets_nin", epochs=0, verbose=1)
    printed = capsys.readouterr().out
    assert "epochs 0: the started classifier only" in printed
    assert re.search(r"Classifier: fitted in closed form \(logistic regression, L2 [\d.e-]+ by 3-fold", printed)
    assert result.history == [] and result.test_metrics["examples"] == 8
    assert result.above_chance == (result.test_metrics["chance_p_value"] < 0.01)
    from nin_keras.zoo import load_preset

    preset = load_preset(result.preset_dir)
    assert preset.class_names == ["cat", "ship"] and preset.metadata["epochs_trained"] == 0


def test_head_preset_starts_from_the_presets_class_maps(tmp_path):
    from nin_keras.zoo import load_preset

    data = write_class_folder(tmp_path / "two", {"ship": (6, 2), "cat": (6, 2)})
    result = finetune("nin_cifar10", data, tmp_path / "out", epochs=0, head="preset", verbose=0)
    source, tuned = load_preset("nin_cifar10"), load_preset(result.preset_dir)
    kernel, bias = (np.asarray(w) for w in source.model.get_layer("mlpconv3").weights[-2:])
    columns = [source.class_names.index(name) for name in tuned.class_names]
    new_kernel, new_bias = (np.asarray(w) for w in tuned.model.get_layer("mlpconv3").weights[-2:])
    np.testing.assert_array_equal(new_kernel, kernel[..., columns])
    np.testing.assert_array_equal(new_bias, bias[columns])
    renamed = write_class_folder(tmp_path / "renamed", {"cat": (6, 2), "ship": (6, 2)})
    for split in ("train", "test"):
        (renamed / split / "cat").rename(renamed / split / "kitten")
    with pytest.raises(ValueError, match=r"\['kitten'\] are not among"):
        finetune("nin_cifar10", renamed, tmp_path / "out2", epochs=0, head="preset", verbose=0)


def test_a_result_at_chance_says_so_in_one_line(tmp_path, capsys):
    """The same photos in both class folders: nothing can tell the classes apart."""
    data = tmp_path / "same"
    for name in ("a", "b"):
        (data / name).mkdir(parents=True)
        for i, jpeg in enumerate(cifar_jpegs("test", {"cat": 10})["cat"]):
            photo(jpeg, (48, 40)).save(data / name / f"{i}.jpg", quality=90)
    result = finetune("nin_cifar10", data, tmp_path / "out", epochs=0, validation_fraction=0.4, verbose=1)
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning:")]
    assert result.above_chance is False
    assert len(warnings) == 1 and "not clearly above chance for 2 classes (50.0%" in warnings[0]
    assert "no better than guessing" in warnings[0]
    assert "--epochs" in warnings[0] and "--learning-rate" in warnings[0]


def test_too_few_held_out_images_to_tell_says_so(tmp_path, capsys):
    data = write_class_folder(tmp_path / "pets", {"cat": (6, 2), "ship": (6, 2)})
    result = finetune("nin_cifar10", data, tmp_path / "out", epochs=0, verbose=1)
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning:")]
    assert result.test_metrics["examples"] == 4 and result.test_metrics["chance_p_value"] >= 0.0625
    assert len(warnings) == 1 and "4 held-out images are too few to tell" in warnings[0]
    assert "--validation-fraction" in warnings[0]


def test_short_runs_are_lengthened_to_the_minimum_steps_and_the_plan_is_printed(tmp_path, capsys):
    data = write_class_folder(tmp_path / "pets", {"cat": (10, 2), "ship": (10, 2)})
    result = finetune("nin_cifar10", data, tmp_path / "out", epochs=2, freeze_body_epochs=1, batch_size=8,
                      min_steps=10, max_steps=1, verbose=1)
    printed = capsys.readouterr().out
    # 18 training images (2 held out), batch 8: 2 steps an epoch; 2 epochs = 4 < 10 -> 3 x as long.
    assert ("Plan: 18 training and 2 validation images, batch 8: 2 epoch(s) of 2 step(s) = 4 optimizer steps, "
            "fewer than the minimum of 10 (--min-steps): training 6 epochs (12 steps, the first 3 with the body "
            "frozen)") in printed
    recipe = json.loads((result.run_dir / "metrics.json").read_text())["recipe"]
    assert recipe["epochs"] == 6 and recipe["model"]["freeze_body_epochs"] == 3
    assert recipe["schedule"]["final_fraction"] == 0.1


def test_freeze_epochs_is_a_deprecated_name_for_freeze_body_epochs(tmp_path):
    data = write_class_folder(tmp_path / "pets", {"cat": (4, 1), "ship": (4, 1)})
    code, printed, err = run_cli("finetune", "nin_cifar10", str(data), "--out", str(tmp_path / "out"),
                                 "--epochs", "0", "--freeze-epochs", "1")
    assert code == 0, err
    assert "--freeze-epochs is deprecated; use --freeze-body-epochs" in err
    recipe = json.loads((tmp_path / "out" / "metadata.json").read_text())["recipe"]
    assert recipe["model"]["freeze_body_epochs"] == 1


# --------------------------------------------------------------------------- what a fine-tune may write


def test_out_folder_of_the_users_files_is_never_replaced(tmp_path):
    data = write_class_folder(tmp_path / "pets", {"cat": (4, 1), "ship": (4, 1)})
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "thesis.txt").write_text("years of work")
    for overwrite in (False, True):
        with pytest.raises(PresetError, match="is not a preset folder; it is never replaced, even with --overwrite"):
            finetune("nin_cifar10", data, notes, epochs=0, overwrite=overwrite, verbose=0)
    assert [p.name for p in notes.iterdir()] == ["thesis.txt"]
    assert (notes / "thesis.txt").read_text() == "years of work" and not (tmp_path / "notes.run").exists()


@pytest.mark.parametrize("where", ["the data itself", "inside the data", "holding the data"])
def test_out_overlapping_the_data_is_refused_before_anything_is_written(tmp_path, where):
    data = write_class_folder(tmp_path / "pets", {"cat": (4, 1), "ship": (4, 1)})
    out = {"the data itself": data, "inside the data": data / "train" / "out", "holding the data": tmp_path}[where]
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with pytest.raises(ValueError, match="overlaps the training data"):
        finetune("nin_cifar10", data, out, epochs=0, overwrite=True, verbose=0)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_another_runs_preset_needs_overwrite_and_a_rerun_replaces_its_own(tmp_path):
    data = write_class_folder(tmp_path / "pets", {"cat": (4, 1), "ship": (4, 1)})
    first = finetune("nin_cifar10", data, tmp_path / "a", epochs=0, verbose=0)
    again = finetune("nin_cifar10", data, tmp_path / "a", epochs=0, verbose=0)  # the same run: allowed
    assert again.preset_dir == first.preset_dir
    with pytest.raises(FileExistsError, match=r"preset from another run \(pass overwrite=True to replace it\)"):
        finetune("nin_cifar10", data, tmp_path / "a", run_dir=tmp_path / "other.run", epochs=0, verbose=0)
    code, _, err = run_cli("finetune", "nin_cifar10", str(data), "--out", str(tmp_path / "a"), "--run-dir",
                           str(tmp_path / "cli.run"), "--epochs", "0")
    assert code == 1 and "(pass --overwrite to replace it)" in err and "overwrite=True" not in err
    replaced = finetune("nin_cifar10", data, tmp_path / "a", run_dir=tmp_path / "other.run", epochs=0,
                        overwrite=True, verbose=0)
    metadata = json.loads((replaced.preset_dir / "metadata.json").read_text())
    assert metadata["fine_tune_run"] == os.fspath((tmp_path / "other.run").resolve())


def test_a_run_folder_of_other_files_is_refused(tmp_path):
    data = write_class_folder(tmp_path / "pets", {"cat": (4, 1), "ship": (4, 1)})
    (tmp_path / "out.run").mkdir()
    (tmp_path / "out.run" / "metrics.csv").write_text("my own numbers")
    with pytest.raises(ValueError, match="is not a fine-tune run folder"):
        finetune("nin_cifar10", data, tmp_path / "out", epochs=1, verbose=0)
    assert (tmp_path / "out.run" / "metrics.csv").read_text() == "my own numbers"


def test_a_diverging_run_stops_writes_no_preset_and_exits_non_zero(tmp_path):
    data = write_class_folder(tmp_path / "pets", {"cat": (8, 2), "ship": (8, 2)})
    out = tmp_path / "out"
    code, _, err = run_cli("finetune", "nin_cifar10", str(data), "--out", str(out), "--epochs", "1",
                           "--batch-size", "4", "--learning-rate", "1e30", "--head", "random", "--quiet")
    assert code == 1 and not out.exists()
    assert err.count("\n") == 1 and re.search(r"training diverged: the loss became (nan|inf) at epoch 1, step \d+", err)
    assert "--learning-rate" in err
    with pytest.raises(TrainingError):
        finetune("nin_cifar10", data, tmp_path / "out2", epochs=1, batch_size=4, learning_rate=1e30, head="random",
                 verbose=0)
    assert not (tmp_path / "out2").exists()


def test_the_epoch_check_refuses_a_runaway_loss_and_non_finite_weights(tmp_path):
    """``check_epoch``: a mean loss over ten times a guess's (ln K) or a NaN/inf weight ends the run;
    a loss at that bound, or of a run that learns, goes on."""
    from nin_keras.train.run_state import DIVERGED_LOSS_FACTOR, check_epoch

    weights = [keras.Variable(np.ones((2, 2), "float32"), name="kernel")]
    bound = DIVERGED_LOSS_FACTOR * np.log(2)
    check_epoch(np.array([bound * 4, 3, 4]), 2, weights, 0, 3, 0.01, tmp_path / "none")  # exactly the bound
    check_epoch(np.array([0.1 * 4, 4, 4]), 2, weights, 0, 3, 0.01, tmp_path / "none")
    with pytest.raises(TrainingError, match=r"mean loss became 6\.941, over 10 times a guess's 0\.693 at epoch 2, step 4"):
        check_epoch(np.array([(bound + 0.01) * 4, 2, 4]), 2, weights, 1, 3, 0.01, tmp_path / "none")
    with pytest.raises(TrainingError, match="mean loss became nan"):
        check_epoch(np.array([np.nan, 2, 4]), 10, weights, 1, 3, 0.01, tmp_path / "none")
    weights.append(keras.Variable(np.array([1.0, np.inf], "float32"), name="bias"))
    with pytest.raises(TrainingError, match=r"the weight bias became NaN or infinite.*--learning-rate"):
        check_epoch(np.array([0.4, 4, 4]), 2, weights, 0, 3, 0.01, tmp_path / "none")


def _saturated_colours(root: Path) -> Path:
    """Two classes of colour noise, far from any CIFAR-10 photo: red or blue channel saturated."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, channel in (("red", 0), ("blue", 2)):
        (root / name).mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 90, (40, 48, 3), dtype=np.uint8)
            pixels[..., channel] = rng.integers(160, 256, (40, 48), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def test_the_default_gradient_clipping_keeps_a_far_out_of_distribution_fine_tune_finite(tmp_path):
    """At the default learning rate, the same colour noise diverges without clipping (loss 48 in the
    second epoch, measured) and trains with the default bound on the gradients' global norm."""
    data = _saturated_colours(tmp_path / "colours")
    with pytest.raises(TrainingError, match="training diverged"):
        finetune("nin_cifar10", data, tmp_path / "unclipped", epochs=5, clip_norm=0, verbose=0, workers=1)
    result = finetune("nin_cifar10", data, tmp_path / "clipped", epochs=5, verbose=0, workers=1)
    losses = [row["loss"] for row in result.history]
    assert all(np.isfinite(losses)) and losses[-1] < 0.1, losses
    assert result.test_metrics["accuracy"] == 1.0
    recipe = json.loads((tmp_path / "clipped" / "metadata.json").read_text())["recipe"]
    assert recipe["optimizer"]["global_clipnorm"] == inspect.signature(finetune).parameters["clip_norm"].default


def test_a_run_whose_weights_blow_up_behind_a_finite_loss_stops_at_that_epoch(tmp_path):
    """Saturated colour noise, far from CIFAR-10, fine-tuned at 0.05 without gradient clipping: the
    loss grew to 1e32 within ten one-step epochs, then read ln 2 again with infinite weights behind
    dead ReLUs, and the run went on for its 100 steps before the preset check refused to write (4
    minutes, one unclear line). The epoch check stops it at the first epoch that is ten times worse
    than guessing."""
    _saturated_colours(tmp_path / "colours")
    with pytest.raises(TrainingError, match=r"training diverged: (the epoch's mean loss|the weight) .* at epoch \d+"):
        finetune("nin_cifar10", tmp_path / "colours", tmp_path / "out", epochs=20, min_steps=0, learning_rate=0.05,
                 clip_norm=0, verbose=0)
    assert not (tmp_path / "out").exists()
    history = (tmp_path / "out.run" / "metrics.csv").read_text().splitlines()
    assert len(history) - 1 < 10, history  # stopped within a few epochs, not after all 20


def test_save_and_load_refuse_non_finite_weights(tmp_path):
    import h5py

    from nin_keras.io_utils import sha256_file
    from nin_keras.zoo import create_model, load_preset, save_preset

    model = create_model("nin_mnist")
    model.get_layer("mlpconv1").weights[0].assign(np.full(model.get_layer("mlpconv1").weights[0].shape, np.nan))
    with pytest.raises(PresetError, match=r"NaN or infinite values in mlpconv1/kernel_0"):
        save_preset(model, tmp_path / "nan", {"dataset": "mnist"})
    assert not (tmp_path / "nan").exists()
    folder = save_preset(create_model("nin_mnist"), tmp_path / "fine", {"dataset": "mnist"})
    weights = folder / "model.weights.h5"
    with h5py.File(weights, "r+") as file:  # a diverged preset written by someone else's tool
        names = []
        file.visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
        file[names[0]][...] = np.inf
    metadata = json.loads((folder / "metadata.json").read_text())
    metadata["files"]["model.weights.h5"] = {"sha256": sha256_file(weights), "size": weights.stat().st_size}
    (folder / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(PresetError, match="NaN or infinite values"):
        load_preset(folder)


@pytest.mark.parametrize("argv, flag", [
    (["finetune", "P", "D", "--out", "O", "--epochs", "-1"], "--epochs"),
    (["finetune", "P", "D", "--out", "O", "--batch-size", "0"], "--batch-size"),
    (["finetune", "P", "D", "--out", "O", "--max-steps", "0"], "--max-steps"),
    (["finetune", "P", "D", "--out", "O", "--max-steps", "-1"], "--max-steps"),
    (["finetune", "P", "D", "--out", "O", "--seed", "-1"], "--seed"),
    (["finetune", "P", "D", "--out", "O", "--min-steps", "-3"], "--min-steps"),
    (["finetune", "P", "D", "--out", "O", "--workers", "0"], "--workers"),
    (["eval", "P", "--data", "D", "--workers", "-2"], "--workers"),
    (["eval", "P", "--limit", "0"], "--limit"),
    (["eval", "P", "--limit", "-5"], "--limit"),
    (["eval", "P", "--batch-size", "0"], "--batch-size"),
    (["eval", "P", "--batch-size", "-1"], "--batch-size"),
    (["train", "R", "--max-steps", "0"], "--max-steps"),
    (["train", "R", "--max-steps", "-1"], "--max-steps"),
    (["train", "R", "--epochs", "0"], "--epochs"),
])
def test_cli_refuses_zero_and_negative_counts_naming_the_flag(argv, flag, capsys):
    from nin_keras import cli

    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    assert stop.value.code == 2
    assert re.search(rf"argument {flag}: must be >= \d, got -?\d+", capsys.readouterr().err)


@pytest.mark.parametrize("options, message", [
    ({"learning_rate": 0.0}, "learning_rate must be a finite number > 0, got 0.0"),
    ({"learning_rate": float("inf")}, "learning_rate must be a finite number > 0, got inf"),
    ({"learning_rate": float("nan")}, "learning_rate must be a finite number > 0, got nan"),
    ({"validation_fraction": 0.0}, r"validation_fraction must be a number in \(0, 1\), got 0.0"),
    ({"epochs": 0, "head": "random"}, "epochs=0 with head='random' would publish an untrained classifier"),
    ({"head": "clever"}, "head must be one of"),
    ({"seed": -1}, "seed must be an integer >= 0, got -1"),
    ({"seed": 2**32}, "seed must be below 2\*\*32"),
])
def test_library_refuses_out_of_range_arguments_by_name(tmp_path, options, message):
    data = write_class_folder(tmp_path / "pets", {"cat": (4, 1), "ship": (4, 1)})
    with pytest.raises(ValueError, match=message):
        finetune("nin_cifar10", data, tmp_path / "out", verbose=0, **options)
    assert not (tmp_path / "out").exists()


def test_eval_library_refuses_zero_counts(tmp_path):
    from nin_keras.train import evaluate_preset

    for name in ("limit", "batch_size"):
        with pytest.raises(ValueError, match=f"{name} must be an integer >= 1, got 0"):
            evaluate_preset("nin_mnist", **{name: 0})


# --------------------------------------------------------------------------- the README's command


def readme_finetune_command() -> list[str]:
    line = next(line for line in README.read_text().splitlines() if line.startswith("nin-keras finetune "))
    return shlex.split(line.split("#")[0])


@pytest.mark.slow
def test_the_readme_finetune_command_beats_chance_on_three_classes_of_100_photos(tmp_path):
    """The README's command exactly as written, in a folder holding ``my_photos/``: airplane, cat
    and ship, 100 photos each from the CIFAR-10 (JPEG copy) test split, blown up to random sizes
    (the body was trained on the training split; 30 photos are held out)."""
    flat_folder(tmp_path / "my_photos", {"airplane": 100, "cat": 100, "ship": 100})
    command = readme_finetune_command()
    assert command[:3] == ["nin-keras", "finetune", "nin_cifar10"]
    executable = Path(sys.executable).with_name("nin-keras")
    done = subprocess.run([str(executable), *command[1:]], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=3600)
    assert done.returncode == 0, done.stderr
    held_out = re.search(r"Held-out accuracy ([\d.]+)% on (\d+) images", done.stdout)
    print("\n".join(line for line in done.stdout.splitlines() if "━" not in line and not line.startswith("Epoch")))
    assert held_out and int(held_out[2]) == 30
    assert float(held_out[1]) >= 70.0
    assert "warning:" not in done.stdout

    # The README's next lines, as written: the preset predicts with your class names, and exports.
    from test_readme import command_lines, shell, top_classes

    from nin_keras.deploy import Predictor

    photo(cifar_jpegs("test", {"cat": 101})["cat"][100]).save(tmp_path / "new_photo.jpg", quality=90)
    lines = [line for line, _ in command_lines("Your own images")]
    after = lines[[line.startswith("nin-keras finetune ") for line in lines].index(True) + 1:]
    assert [line.split()[:2] for line in after] == [["nin-keras", "predict"], ["nin-keras", "export"]]
    predicted = top_classes(shell(after[0], tmp_path))["new_photo.jpg"]
    assert sorted(predicted) == ["airplane", "cat", "ship"]
    shell(after[1], tmp_path)
    exported = Predictor(tmp_path / "exported" / "my_preset.onnx")
    assert exported.classify([str(tmp_path / "new_photo.jpg")])[0][0][0] == predicted[0]
