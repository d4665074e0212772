"""Training on JAX without TensorFlow: Keras ``fit`` under the library's recipes (``nin_keras.train.fit_loop``).

Runs in ``.venv-jax`` through ``scripts/test_jax.sh``. The in-process runs use ``maxout_mnist`` on a
slice of MNIST (seconds); the command-line runs are the acceptance commands of issue 28, kept
short with ``--max-steps`` and a folder of a few generated photos.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from nin_keras.train import load_recipe

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from shell_lines import command, command_lines, kill_then_rerun_resumes, start, stop, wait_for  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
DATASETS = Path(os.environ.get("NIN_KERAS_DATA_DIR") or SHARED / "datasets").expanduser()
MNIST = DATASETS / "mnist.npz"
needs_mnist = pytest.mark.skipif(not MNIST.exists(), reason=f"{MNIST} not present (no MNIST to train on)")


def tiny_recipe(**overrides) -> dict:
    """500 training images (200 more held out), batches of 50: 10 steps per epoch."""
    recipe = load_recipe("maxout_mnist")
    recipe["dataset"] = {"name": "mnist", "source": "local", "train_examples": 700, "test_examples": 200}
    recipe.update(name="maxout_mnist_tiny", validation={"holdout": 200}, epochs=2, batch_size=50,
                  schedule={"name": "cosine", "warmup_epochs": 0.5}, checkpoint_every_steps=4)
    recipe.update(overrides)
    return recipe


@pytest.fixture(autouse=True)
def data_dir(monkeypatch):
    monkeypatch.setenv("NIN_KERAS_DATA_DIR", str(DATASETS))


def test_training_imports_no_tensorflow():
    import nin_keras.train.fit_loop  # noqa: F401
    from nin_keras.train import finetune, train  # noqa: F401

    assert keras.backend.backend() == "jax" and "tensorflow" not in sys.modules


def test_l2_is_caffe_style_on_the_fit_path():
    from nin_keras.train.components import Augmentation
    from nin_keras.train.fit_loop import soft_target_loss, training_model

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (8, 3, 3, 1), dtype=np.uint8)
    labels = np.eye(2, dtype="float32")[rng.integers(0, 2, 8)]
    start = None

    def one_step(l2):
        nonlocal start
        inputs = keras.Input((3, 3, 1))
        network = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs)))
        if start is None:
            start = [rng.normal(size=w.shape).astype("float32") for w in network.get_weights()]
        network.set_weights(start)
        model = training_model(network, [keras.layers.Rescaling(1 / 255)], Augmentation([], [], None), (3, 3, 1), l2)
        model.compile(keras.optimizers.SGD(0.5), soft_target_loss(0.0))
        model.train_on_batch((images, labels), labels)
        return network.get_weights()

    w_plain, b_plain = one_step(0.0)
    w_l2, b_l2 = one_step(0.1)
    # Caffe: w <- w - lr * (grad + wd * w); the bias is not decayed.
    np.testing.assert_allclose(w_l2, w_plain - 0.5 * 0.1 * start[0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(b_l2, b_plain, rtol=1e-6)


def test_mixing_and_raw_rand_augment_in_the_fit_path_on_jax():
    from nin_keras.layers import MixUpCutMix
    from nin_keras.train.components import Augmentation
    from nin_keras.train.fit_loop import label_accuracy, soft_target_loss, split, training_model

    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    labels = np.eye(3, dtype="float32")[rng.integers(0, 3, 6)]
    # CutMix on JAX against NumPy: timm's box for lam 0.6 centred at (1, 6), clipped, and its area.
    x = images.astype("float32")
    mixed, soft = MixUpCutMix(cutmix_alpha=1.0).mix(
        x, labels, {"lam": np.float32(0.6), "cutmix": np.bool_(True), "center": np.array([1, 6], np.int32)})
    half = int(8 * np.sqrt(0.4)) // 2  # 2: rows 0..2 (clipped at 0), columns 4..7
    expected = x.copy()
    expected[:, 0:3, 4:8] = x[::-1, 0:3, 4:8]
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(mixed), expected)
    corrected = 1 - (min(1 + half, 8) - max(1 - half, 0)) * (min(6 + half, 8) - max(6 - half, 0)) / 64
    np.testing.assert_allclose(keras.ops.convert_to_numpy(soft), corrected * labels + (1 - corrected) * labels[::-1],
                               rtol=1e-6)
    # RandAugment on raw pixels, then the preprocessing, then MixUp, inside the compiled fit step.
    inputs = keras.Input((8, 8, 3))
    network = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(inputs)))
    augmentation = Augmentation([keras.layers.RandAugment(seed=1)], [], MixUpCutMix(mixup_alpha=1.0, seed=2))
    model = training_model(network, [keras.layers.Rescaling(1 / 255)], augmentation, (8, 8, 3), 0.0)
    outputs = model((images, labels), training=True)
    probabilities, targets = (keras.ops.convert_to_numpy(t) for t in split(outputs))
    assert probabilities.shape == targets.shape == (6, 3) and np.all(np.isfinite(probabilities))
    assert not np.allclose(targets, labels) and np.allclose(targets.sum(-1), 1.0, rtol=1e-6)
    model.compile(keras.optimizers.SGD(0.1), soft_target_loss(0.1),
                  metrics=[keras.metrics.MeanMetricWrapper(label_accuracy, name="accuracy")])
    logs = model.train_on_batch((images, labels), labels, return_dict=True)
    assert np.isfinite(logs["loss"]) and 0 <= logs["accuracy"] <= 1


def test_weight_average_matches_the_hand_computed_recurrence_on_jax():
    from nin_keras.train.ema import WeightAverage

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), keras.layers.BatchNormalization()])
    tracked = [v for v in model.variables if "float" in str(v.dtype)]
    rng = np.random.default_rng(0)
    average = WeightAverage(model, decay=0.9, warmup=True)
    expected = [np.array(v.numpy(), np.float64) for v in tracked]
    for t in range(1, 6):
        values = [rng.normal(size=v.shape) for v in tracked]
        for v, value in zip(tracked, values):
            v.assign(value)
        average.update()
        d = min(0.9, (1 + t) / (10 + t))
        expected = [d * e + (1 - d) * value for e, value in zip(expected, values)]
    for shadow, e in zip(average.shadow, expected):
        np.testing.assert_allclose(shadow.numpy(), e, rtol=1e-5, atol=1e-6)


class _Crash(Exception):
    pass


@needs_mnist
def test_crash_mid_epoch_then_resume_matches_the_uninterrupted_run(tmp_path, monkeypatch):
    from nin_keras.train import fit_loop, train

    # With a weight average, raw-pixel augmentation, erasing and MixUp/CutMix: all their states resume.
    recipe = tiny_recipe(ema={"decay": 0.9, "warmup": True}, mixing={"mixup_alpha": 0.8, "cutmix_alpha": 1.0},
                         raw_augmentation=[{"module": "keras.layers", "class_name": "RandomBrightness",
                                            "config": {"factor": 0.2}, "registered_name": None}],
                         augmentation=[{"module": "keras.layers", "class_name": "RandomErasing",
                                        "config": {"factor": [0.5, 0.5], "fill_value": 0.0}, "registered_name": None}])
    reference = train(recipe, tmp_path / "reference", verbose=0)

    original = fit_loop._Steps.on_train_batch_end

    def crashing(self, batch, logs=None):
        original(self, batch, logs)
        if self.run.state.values["global_step"] == 16:
            raise _Crash

    monkeypatch.setattr(fit_loop._Steps, "on_train_batch_end", crashing)
    with pytest.raises(_Crash):
        train(recipe, tmp_path / "resumed", verbose=0)
    monkeypatch.undo()
    with np.load(tmp_path / "resumed" / "checkpoint.npz") as data:
        state = json.loads(str(data["state"]))
        assert any(str(p).startswith("ema") for p in data["ema_paths"])  # the average is checkpointed
    # The last checkpoint: epoch 2, step 4 (every 4 steps), 14 steps in all; one epoch recorded.
    assert (state["epoch"], state["step"], state["global_step"], len(state["history"])) == (1, 4, 14, 1)
    resumed = train(recipe, tmp_path / "resumed", verbose=0)
    assert resumed.resumed_from == {"epoch": 1, "step": 4}
    # Same data order, crops, dropout masks, optimizer, schedule and average: the same weights, bit for bit.
    assert resumed.weights_digest == reference.weights_digest
    # The validation metrics too; the training means of the resumed epoch join two ``fit`` calls'
    # float32 running means, so they agree to rounding.
    timing = {"seconds", "cpu_seconds"}
    for a, b in zip(resumed.history, reference.history):
        assert a.keys() == b.keys()
        for key in a.keys() - timing:
            assert a[key] == (pytest.approx(b[key], rel=1e-6) if key in ("loss", "accuracy") else b[key]), key
    assert all("val_accuracy" in row for row in reference.history)
    # The published weights are the average's, measured by the preset's own inference model.
    assert resumed.test_metrics == reference.test_metrics


DATA_PARALLEL = r"""
import json, sys
import numpy as np
import keras
from nin_keras.train import train
from nin_keras.zoo import load_preset
recipe = json.loads(sys.argv[1])
weights = {}
for strategy in ("default", "data_parallel"):
    result = train(recipe, sys.argv[2] + "/" + strategy, strategy=strategy, verbose=0)
    weights[strategy] = load_preset(result.preset_dir).model.get_weights()
difference = max(float(np.max(np.abs(a - b))) for a, b in zip(weights["default"], weights["data_parallel"]))
scale = max(float(np.max(np.abs(a))) for a in weights["default"])
print(json.dumps({"devices": len(keras.distribution.list_devices()), "difference": difference, "scale": scale,
                  "tensorflow": "tensorflow" in sys.modules}))
"""


@needs_mnist
def test_data_parallel_on_two_virtual_devices_equals_one_device(tmp_path):
    # Dropout off: its masks are drawn per device shard, so they are not the single-device ones.
    # Preprocessing with state (Normalization's fitted moments, made before the distribution is
    # set): the run trains on copies made under it.
    recipe = tiny_recipe(epochs=1, preprocessing=[{"module": "keras.layers", "class_name": "Normalization",
                                                   "config": {"axis": -1}, "registered_name": None}])
    recipe["model"] = {**recipe["model"], "kwargs": {**recipe["model"].get("kwargs", {}), "dropout": 0.0}}
    env = dict(os.environ, KERAS_BACKEND="jax", XLA_FLAGS="--xla_force_host_platform_device_count=2",
               NIN_KERAS_DATA_DIR=str(DATASETS))
    done = subprocess.run([sys.executable, "-c", DATA_PARALLEL, json.dumps(recipe), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["devices"] == 2 and not report["tensorflow"]
    # Ten SGD steps: only the order of the float32 gradient sums differs (per device, then across).
    assert report["difference"] <= 1e-4 * max(1.0, report["scale"]), report


def _cli_command() -> list[str]:
    cli = Path(sys.executable).parent / "nin-keras"
    return [str(cli)] if cli.exists() else [sys.executable, "-m", "nin_keras.cli"]


def _cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KERAS_DISTRIBUTION_", "XLA_FLAGS"))}
    return {**env, "KERAS_BACKEND": "jax", "NIN_KERAS_DATA_DIR": str(DATASETS), **extra}


def _cli(*args: str, timeout: float = 600, cwd=None, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([*_cli_command(), *args], env=_cli_env(**env), capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _in_two_processes(command: list[str], out0: Path, out1: Path) -> list[tuple[int, str, str]]:
    """``nin-keras *command`` in two processes joined on loopback (JAX's CPU collectives: gloo):
    process 0 from the command line's flags, process 1 from the KERAS_DISTRIBUTION_* variables,
    the two ways the library takes; ``--out out0`` and ``--out out1``. Returns each process's
    (exit code, stdout, stderr)."""
    address = f"127.0.0.1:{_free_port()}"
    launched = [
        subprocess.Popen([*_cli_command(), *command, "--out", str(out0), "--coordinator", address,
                          "--num-processes", "2", "--process-id", "0"], env=_cli_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
        subprocess.Popen([*_cli_command(), *command, "--out", str(out1)],
                         env=_cli_env(KERAS_DISTRIBUTION_JOB_ADDRESSES=address, KERAS_DISTRIBUTION_NUM_PROCESSES="2",
                                      KERAS_DISTRIBUTION_PROCESS_ID="1"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
    ]
    try:
        outputs = [p.communicate(timeout=600) for p in launched]
    finally:
        for p in launched:
            p.kill()  # a process left waiting for its peer
    return [(p.returncode, out, err) for p, (out, err) in zip(launched, outputs)]


def _digest(stdout: str) -> str:
    return stdout.split("weights digest: ")[1].split()[0]


def _no_dropout(recipe: dict) -> dict:
    """Dropout off: its masks are drawn per device shard, so they are not the single-device ones."""
    recipe["model"] = {**recipe["model"], "kwargs": {**recipe["model"].get("kwargs", {}), "dropout": 0.0}}
    return recipe


@needs_mnist
def test_data_parallel_over_two_processes_equals_one_device(tmp_path):
    # Two processes on loopback, one CPU device each, joined by keras.distribution.initialize. Each
    # has its own --out, so that the folders show who writes: the chief alone (checkpoint,
    # metrics, preset).
    from nin_keras.train import train
    from nin_keras.zoo import load_preset

    recipe = _no_dropout(tiny_recipe(epochs=1))
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))
    done = _in_two_processes(["train", str(path), "--strategy", "data_parallel", "--quiet"],
                             tmp_path / "p0", tmp_path / "p1")
    for code, out, err in done:
        assert code == 0, err[-3000:]
    # One run: the same weights on both processes (the digest covers every variable).
    assert _digest(done[0][1]) == _digest(done[1][1])
    assert "preset: " in done[0][1] and "preset: " not in done[1][1]
    assert sorted(p.name for p in (tmp_path / "p1").iterdir()) == []
    assert {"checkpoint.npz", "metrics.json", "preset"} <= {p.name for p in (tmp_path / "p0").iterdir()}
    metadata = json.loads((tmp_path / "p0" / "preset" / "metadata.json").read_text())
    assert metadata["recipe"]["model"]["kwargs"]["dropout"] == 0.0

    reference = train(recipe, tmp_path / "one_device", verbose=0)
    ours = load_preset(tmp_path / "p0" / "preset").model.get_weights()
    theirs = load_preset(reference.preset_dir).model.get_weights()
    scale = max(float(np.max(np.abs(w))) for w in theirs)
    difference = max(float(np.max(np.abs(a - b))) for a, b in zip(ours, theirs))
    # Ten SGD steps of a global batch of 50, 25 images per process: only the order of the float32
    # gradient sums differs (per process, then across), as with two devices in one process.
    assert difference <= 1e-4 * max(1.0, scale), (difference, scale)
    # The validation each epoch runs in every process on the whole hold-out: equal figures.
    history = json.loads((tmp_path / "p0" / "metrics.json").read_text())["history"]
    assert history[0]["val_accuracy"] == pytest.approx(reference.history[0]["val_accuracy"], abs=1e-9)


def test_each_process_feeds_its_slice_of_every_global_batch():
    # What makes two processes' local batches one global batch (Keras joins them in process order,
    # jax.make_array_from_process_local_data); duplicated full batches would give the same mean
    # gradient, so the weights test above cannot tell.
    from nin_keras.train.fit_loop import EpochBatches, permutation

    images = np.arange(40 * 2 * 2, dtype=np.uint8).reshape(40, 2, 2, 1)
    labels = np.arange(40) % 3
    order = permutation(7, 1, 40)
    whole = EpochBatches(images, labels, order, 8, 1, 3, 3)
    parts = [EpochBatches(images, labels, order, 8, 1, 3, 3, shard=(i, 2)) for i in range(2)]
    assert len(whole) == len(parts[0]) == 3
    for index in range(3):
        (x, targets), y = whole[index]  # ((images, one-hot targets for mixing), one-hot labels)
        assert x.shape[0] == 8 and np.array_equal(x, images[order[(1 + index) * 8:(2 + index) * 8]])
        np.testing.assert_array_equal(y, np.eye(3)[labels[order[(1 + index) * 8:(2 + index) * 8]]])
        sliced = [part[index] for part in parts]
        assert [s[0][0].shape[0] for s in sliced] == [4, 4]
        np.testing.assert_array_equal(np.concatenate([s[0][0] for s in sliced]), x)
        np.testing.assert_array_equal(np.concatenate([s[0][1] for s in sliced]), targets)
        np.testing.assert_array_equal(np.concatenate([s[1] for s in sliced]), y)


def test_process_flags_go_together_and_with_data_parallel(tmp_path):
    from nin_keras.train.strategy import Processes, make_strategy

    done = _cli("train", "maxout_mnist", "--strategy", "data_parallel", "--num-processes", "2", "--out",
                str(tmp_path / "run"))
    assert done.returncode == 1 and "--coordinator, --num-processes and --process-id go together" in done.stderr
    done = _cli("train", "maxout_mnist", "--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id",
                "0", "--out", str(tmp_path / "run"))
    assert done.returncode == 1 and "for --strategy data_parallel" in done.stderr
    done = _cli("finetune", "nin_cifar10", str(tmp_path), "--out", str(tmp_path / "x"), "--coordinator", "127.0.0.1:1")
    assert done.returncode == 1 and "--coordinator, --num-processes and --process-id go together" in done.stderr
    done = _cli("finetune", "nin_cifar10", str(tmp_path), "--out", str(tmp_path / "x"), "--process-id", "-1")
    assert done.returncode == 2 and "--process-id" in done.stderr
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="process_id must be below num_processes"):
        Processes("127.0.0.1:1", 2, 2)
    with pytest.raises(ValueError, match="for --strategy data_parallel"):
        make_strategy("default", Processes("127.0.0.1:1", 1, 0))
    # One process: nothing to join, DataParallel over the local devices.
    assert make_strategy("data_parallel", Processes("127.0.0.1:1", 1, 0)).device_mesh.devices.size == 1


def _loads_and_predicts(preset_dir: Path, images: np.ndarray, classes: int) -> None:
    from nin_keras.zoo import load_preset

    preset = load_preset(preset_dir)
    probabilities = preset.inference_model().predict(images, verbose=0)
    assert probabilities.shape == (len(images), classes)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def _scores_what_its_run_measured(preset_dir: Path) -> None:
    """Loaded back from its folder, the preset scores on its run's test images exactly the
    accuracy the run measured before writing it (the weights saved are the weights measured)."""
    from nin_keras.data.arrays import load_arrays
    from nin_keras.evaluation import evaluate_model
    from nin_keras.zoo import ImageClassifier

    metadata = json.loads((preset_dir / "metadata.json").read_text())
    images, labels = load_arrays(metadata["recipe"]["dataset"], "test", str(DATASETS))
    assert len(labels) == metadata["metrics"]["test_examples"]
    measured = evaluate_model(ImageClassifier.from_preset(preset_dir), images, labels)["accuracy"]
    assert 100 * measured == pytest.approx(metadata["metrics"]["test_accuracy"], abs=0.006)


#: Issue 28's acceptance command, run as written (in a fresh folder: the run goes to runs/nin_mnist_fast).
TRAIN_COMMAND = "nin-keras train nin_mnist_fast --max-steps 20"


@needs_mnist
def test_cli_train_nin_mnist_fast_as_written_writes_a_preset_that_predicts(tmp_path):
    # The whole recipe: 55,000 training images, 20 steps of 128, then the 10,000-image test split
    # through the preset's inference model; about 1.5 min on 2 shared CPU cores.
    done = _cli(*TRAIN_COMMAND.split()[1:], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "runs" / "nin_mnist_fast"
    state = json.loads(str(np.load(out / "checkpoint.npz")["state"]))
    assert state["global_step"] == 20 and state["epoch"] == 0
    metadata = json.loads((out / "preset" / "metadata.json").read_text())
    assert metadata["metrics"]["test_examples"] == 10000 and metadata["command"] == TRAIN_COMMAND
    _scores_what_its_run_measured(out / "preset")


@needs_mnist
def test_cli_train_data_parallel_on_two_virtual_devices_writes_a_preset_that_predicts(tmp_path):
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(tiny_recipe(epochs=1)))
    out = tmp_path / "run"
    done = _cli("train", str(path), "--strategy", "data_parallel", "--out", str(out), "--quiet",
                XLA_FLAGS="--xla_force_host_platform_device_count=2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((out / "metrics.json").read_text())["strategy"] == "DataParallel"
    _scores_what_its_run_measured(out / "preset")


def test_cli_finetune_on_jax_writes_a_preset_that_predicts(tmp_path):
    folder = _colour_folder(tmp_path / "colours", train=6, test=2)
    out = tmp_path / "tuned"
    done = _cli("finetune", "nin_cifar10", str(folder), "--out", str(out), "--epochs", "1", "--batch-size", "4",
                "--min-steps", "0", "--workers", "2", "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["class_names"] == ["blue", "red"] and len(metadata["history"]) == 1
    _loads_and_predicts(out, np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8), 2)


def test_finetune_over_two_processes_resumes_from_the_chiefs_checkpoint(tmp_path):
    # nin_cifar10 reuses its fitted GCN + ZCA: preprocessing with state, made before the
    # distribution is set. Fine-tuned over two processes that share one --out, stopped after a
    # step and rerun, both processes resume from the chief's checkpoint and end on the weights of
    # the run never stopped.
    data = _colour_folder(tmp_path / "colours", train=5, test=1)  # 8 training, 2 held-out images
    command = ["finetune", "nin_cifar10", str(data), "--epochs", "2", "--batch-size", "4", "--min-steps", "0",
               "--learning-rate", "1e-3", "--strategy", "data_parallel", "--quiet"]

    def succeeded(done):
        for code, _, err in done:
            assert code == 0, err[-3000:]
        return done

    stopped = tmp_path / "stopped"
    succeeded(_in_two_processes([*command, "--max-steps", "1"], stopped, stopped))
    # A process that does not see the chief's folder: one line in each process, nothing trained.
    for code, _, err in _in_two_processes(command, stopped, tmp_path / "elsewhere"):
        assert code == 1 and "did not find one checkpoint to resume from (in process order: step 1, none;" in err
    resumed = succeeded(_in_two_processes(command, stopped, stopped))
    whole = succeeded(_in_two_processes(command, tmp_path / "whole", tmp_path / "whole"))
    assert len({_digest(out) for _, out, _ in resumed + whole}) == 1
    assert len(json.loads((stopped / "metadata.json").read_text())["history"]) == 2
    _loads_and_predicts(stopped, np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8), 2)


def test_a_cifar_jpeg_archive_becomes_training_arrays_in_worker_processes_without_tensorflow(tmp_path, monkeypatch):
    """The CIFAR-10 JPEG copy's layout (``train/<class>/<nnnn>.jpg`` in a .tar.gz), read for
    training as ``train()`` reads it (``load_arrays``), after JAX has started its threads: worker
    processes decode it (forkserver), equal to Pillow's own decoding, and TensorFlow is never imported."""
    import io
    import tarfile

    import jax
    from PIL import Image

    from nin_keras.data import decode_pool
    from nin_keras.data.arrays import load_arrays
    from nin_keras.data.catalog import dataset_info
    from nin_keras.data.image_folder import decode_image_folder

    jax.numpy.arange(4).block_until_ready()  # the backend's thread pools exist: fork would be unsafe now
    monkeypatch.setenv("NIN_KERAS_HOME", str(tmp_path / "home"))
    rng = np.random.default_rng(28)
    names = dataset_info("cifar10").class_names
    files = []
    with tarfile.open(tmp_path / "cifar10-jpeg.tar.gz", "w:gz") as tar:
        for name in names:
            for i in range(15):
                buffer = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), np.uint8)).save(buffer, "JPEG", quality=90)
                info = tarfile.TarInfo(f"train/{name}/{i:04d}.jpg")
                info.size = len(buffer.getvalue())
                tar.addfile(info, io.BytesIO(buffer.getvalue()))
                files.append(buffer.getvalue())
    assert len(files) > decode_pool.CHUNK_FILES  # more than one chunk: the workers decode
    reference = np.stack([np.asarray(Image.open(io.BytesIO(data))) for data in files])
    images, labels = load_arrays({"name": "cifar10", "source": "local"}, "train", tmp_path)
    np.testing.assert_array_equal(images, reference)
    assert labels.tolist() == np.repeat(np.arange(10), 15).tolist()
    for workers in (1, 2):
        decoded, _ = decode_image_folder(tmp_path / "cifar10-jpeg.tar.gz", names, workers=workers)["train"]
        assert decoded.tobytes() == reference.tobytes()
    assert "tensorflow" not in sys.modules


def _colour_folder(root: Path, train: int, test: int) -> Path:
    """``root/{train,test}/{red,blue}/<n>.png``: 48x40 photos, one channel bright."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("test", test)):
        for name, channel in (("red", 0), ("blue", 2)):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 90, (40, 48, 3), dtype=np.uint8)
                pixels[..., channel] = rng.integers(160, 256, (40, 48), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


def test_finetune_freezes_the_body_then_trains_it_on_jax(tmp_path):
    # As tests/test_images.py checks on TensorFlow: the frozen epoch leaves the body bit for bit,
    # the classifier moves; resumed into the next epoch, the body trains too.
    from nin_keras.train import finetune
    from nin_keras.zoo import load_preset

    data = _colour_folder(tmp_path / "colours", train=5, test=1)  # 8 training, 2 validation images
    options = dict(epochs=2, freeze_body_epochs=1, batch_size=4, min_steps=0, head="random", learning_rate=1e-3,
                   verbose=0)
    first = finetune("nin_cifar10", data, tmp_path / "out", max_steps=2, **options)
    assert len(first.history) == 1
    source, tuned = load_preset("nin_cifar10"), load_preset(tmp_path / "out")
    for layer in source.model.layers:
        ours = [np.asarray(w) for w in tuned.model.get_layer(layer.name).weights]
        theirs = [np.asarray(w) for w in layer.weights]
        if layer.name in ("mlpconv1", "mlpconv2"):
            assert all(np.array_equal(a, b) for a, b in zip(ours, theirs)), layer.name
    assert [w.shape for w in tuned.model.get_layer("mlpconv3").weights][-2:] == [(1, 1, 192, 2), (2,)]
    assert not np.array_equal(*_first_kernels(tuned, source, "mlpconv3"))  # the classifier block trained
    second = finetune("nin_cifar10", data, tmp_path / "out", **options)
    assert second.resumed_from == {"epoch": 1, "step": 0} and len(second.history) == 2
    # Resumed across the freeze boundary (a new optimizer), it equals the run never stopped.
    whole = finetune("nin_cifar10", data, tmp_path / "whole", **options)
    assert whole.weights_digest == second.weights_digest
    assert not np.array_equal(*_first_kernels(load_preset(tmp_path / "out"), source, "mlpconv1"))


def _first_kernels(a, b, layer: str) -> tuple[np.ndarray, np.ndarray]:
    return tuple(np.asarray(preset.model.get_layer(layer).weights[0]) for preset in (a, b))


def test_finetune_freeze_body_trains_the_classifier_only_on_jax(tmp_path):
    from nin_keras.train import finetune
    from nin_keras.zoo import load_preset

    data = _colour_folder(tmp_path / "colours", train=3, test=1)
    finetune("nin_cifar10", data, tmp_path / "out", epochs=1, freeze_body=True, batch_size=2, min_steps=0,
             head="random", learning_rate=1e-3, verbose=0)
    source, tuned = load_preset("nin_cifar10"), load_preset(tmp_path / "out")
    for name in ("mlpconv1", "mlpconv2"):
        for a, b in zip(tuned.model.get_layer(name).weights, source.model.get_layer(name).weights):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(*_first_kernels(tuned, source, "mlpconv3"))  # the classifier block trained


@needs_mnist
@pytest.mark.parametrize("mixed_precision", [True, "mixed_bfloat16"])
def test_mixed_precision_trains_on_jax(tmp_path, mixed_precision):
    # tests/test_train.py's check on TensorFlow, on the fit path.
    from nin_keras.train import train
    from nin_keras.zoo import load_preset

    result = train(tiny_recipe(epochs=1, mixed_precision=mixed_precision), tmp_path, verbose=0)
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    assert np.isfinite(result.history[0]["loss"])
    with np.load(tmp_path / "checkpoint.npz") as state:
        paths = [str(p) for p in state["optimizer_paths"]]
    # float16 needs loss scaling, and its state is checkpointed; bfloat16 has float32's range.
    assert any(p.endswith("/dynamic_scale") for p in paths) == (mixed_precision is True)
    assert load_preset(result.preset_dir).model.dtype_policy.name == "float32"


@needs_mnist
def test_a_diverging_run_raises_training_error_and_writes_no_preset_on_jax(tmp_path):
    from nin_keras.errors import TrainingError
    from nin_keras.train import train

    # maxout_mnist's max-norm constraints keep its weights finite at any learning rate; an L2
    # coefficient past float32's range makes the loss infinite from the first step.
    recipe = tiny_recipe(epochs=1, checkpoint_every_steps=0, weight_decay={"value": 1e38, "mode": "l2"})
    with pytest.raises(TrainingError, match=r"training diverged: the loss became (nan|inf) at epoch 1, step \d+"):
        train(recipe, tmp_path, verbose=0)
    assert not (tmp_path / "preset").exists() and not (tmp_path / "checkpoint.npz").exists()


def test_a_diverging_finetune_exits_1_with_one_line_on_jax(tmp_path):
    # tests/test_finetune.py's check on TensorFlow.
    data = _colour_folder(tmp_path / "colours", train=5, test=1)
    out = tmp_path / "out"
    done = _cli("finetune", "nin_cifar10", str(data), "--out", str(out), "--epochs", "1", "--batch-size", "4",
                "--learning-rate", "1e30", "--head", "random", "--min-steps", "0", "--quiet")
    assert done.returncode == 1 and not out.exists()
    assert done.stderr.count("\n") == 1, done.stderr[-3000:]
    assert re.search(r"training diverged: the loss became (nan|inf) at epoch 1, step \d+", done.stderr)


#: The README's fine-tune command, run as written in a folder holding my_photos/.
FINETUNE_COMMAND = "nin-keras finetune nin_cifar10 my_photos/ --out my_preset"


def _photo_folder(root: Path, classes: tuple[str, ...], train: int, test: int) -> None:
    """CIFAR-10 (JPEG copy) test-split images of ``classes`` blown up to 451x300 photos, in
    ``root/train/<class>`` and ``root/test/<class>`` (the first ``train + test`` of each)."""
    import io
    import tarfile

    from PIL import Image

    archive = DATASETS / "cifar10-jpeg.tar.gz"
    if not archive.is_file():
        pytest.skip(f"{archive} is absent")
    taken = {name: 0 for name in classes}
    with tarfile.open(archive) as tar:
        for member in tar:
            parts = member.name.split("/")
            if len(parts) != 3 or parts[0] != "test" or parts[1] not in taken or taken[parts[1]] >= train + test:
                continue
            split = "train" if taken[parts[1]] < train else "test"
            (root / split / parts[1]).mkdir(parents=True, exist_ok=True)
            image = Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGB").resize((451, 300))
            image.save(root / split / parts[1] / f"{taken[parts[1]]}.jpg", quality=90)
            taken[parts[1]] += 1
            if all(count >= train + test for count in taken.values()):
                break


@pytest.mark.slow
def test_cli_finetune_as_in_the_readme_writes_a_preset_that_predicts(tmp_path):
    # The defaults (5 epochs stretched to the 100-step minimum) on photos: CIFAR-10 test-split
    # images of three classes blown up, as tests/test_finetune.py does on TensorFlow. (Saturated
    # colour noise, far from CIFAR-10, diverges at the default learning rate: TrainingError.)
    _photo_folder(tmp_path / "my_photos", ("airplane", "cat", "ship"), train=20, test=10)
    done = _cli(*FINETUNE_COMMAND.split()[1:], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "warning:" not in done.stderr, done.stderr  # held out: above chance
    metadata = json.loads((tmp_path / "my_preset" / "metadata.json").read_text())
    assert metadata["class_names"] == ["airplane", "cat", "ship"] and metadata["command"] == FINETUNE_COMMAND
    _loads_and_predicts(tmp_path / "my_preset", np.zeros((2, 32, 32, 3), np.uint8), 3)


def _readme_line(part: str) -> str:
    """The line of the README's "Training on JAX" block holding ``part``."""
    return next(line for line, _ in command_lines("Training on JAX.") if part in line)


def test_the_readme_training_on_jax_commands_are_the_tested_ones():
    commands = [command(line) for line, _ in command_lines("Training on JAX.")]
    tested = {f"KERAS_BACKEND=jax {TRAIN_COMMAND}", f"KERAS_BACKEND=jax {FINETUNE_COMMAND}",
              command(_readme_line("--out runs/cifar_jax")), command(_readme_line("--strategy data_parallel"))}
    assert sorted(commands) == sorted(tested)


@pytest.mark.slow
def test_the_readme_cifar_run_on_jax_killed_and_rerun_resumes(tmp_path):
    """"kill it, rerun it: it resumes", the line as written (36 epochs of CIFAR-10: killed after its
    first checkpoint, then again once the rerun says where it resumes)."""
    step = kill_then_rerun_resumes(_readme_line("--out runs/cifar_jax"), tmp_path,
                                   tmp_path / "runs" / "cifar_jax" / "checkpoint.npz", NIN_KERAS_DATA_DIR=str(DATASETS))
    assert step >= 100 and step % 100 == 0, step  # the recipe checkpoints every 100 steps


@pytest.mark.slow
def test_the_readme_data_parallel_run_on_jax_trains_and_checkpoints(tmp_path):
    """The ``--strategy data_parallel`` line as written, on this machine's devices, without
    TensorFlow: it trains to its first checkpoint (then it is stopped)."""
    process = start(_readme_line("--strategy data_parallel"), tmp_path, NIN_KERAS_DATA_DIR=str(DATASETS))
    checkpoint = tmp_path / "runs" / "nin_cifar10_modern" / "checkpoint.npz"
    try:
        wait_for(checkpoint.is_file, process, "checkpoint")
    finally:
        stop(process)
    state = json.loads(str(np.load(checkpoint)["state"]))
    assert state["global_step"] >= 100 and state["recipe"]["name"] == "nin_cifar10_modern", state


def test_a_tensorflow_strategy_on_jax_names_the_one_that_runs():
    from nin_keras.train.strategy import make_strategy

    for name in ("mirrored", "multiworker"):
        with pytest.raises(ValueError, match="--strategy data_parallel"):
            make_strategy(name)
    with pytest.raises(ValueError, match="strategy must be one of"):
        make_strategy("tpu")
    assert make_strategy("default") is None
