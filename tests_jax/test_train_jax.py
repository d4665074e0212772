"""Training on JAX without TensorFlow: Keras ``fit`` under the library's recipes (``nin_keras.train.fit_loop``).

Runs in ``.venv-jax`` through ``scripts/test_jax.sh``. The in-process runs use ``maxout_mnist`` on a
slice of MNIST (seconds); the command-line runs are the acceptance commands of issue 28, kept
short with ``--max-steps`` and a folder of a few generated photos.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from nin_keras.train import load_recipe

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
    recipe = tiny_recipe(epochs=1)
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


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    cli = Path(sys.executable).parent / "nin-keras"
    command = [str(cli)] if cli.exists() else [sys.executable, "-m", "nin_keras.cli"]
    env = dict(os.environ, KERAS_BACKEND="jax", NIN_KERAS_DATA_DIR=str(DATASETS))
    return subprocess.run([*command, *args], env=env, capture_output=True, text=True, timeout=timeout)


def _loads_and_predicts(preset_dir: Path, images: np.ndarray, classes: int) -> None:
    from nin_keras.zoo import load_preset

    preset = load_preset(preset_dir)
    probabilities = preset.inference_model().predict(images, verbose=0)
    assert probabilities.shape == (len(images), classes)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


@needs_mnist
def test_cli_train_nin_mnist_fast_on_jax_writes_a_preset_that_predicts(tmp_path):
    # nin_mnist_fast on a slice of MNIST: XLA's CPU convolutions make a full-size NIN step seconds
    # long here, and the recipe's test split alone would take minutes.
    recipe = load_recipe("nin_mnist_fast")
    recipe["dataset"] = {**recipe["dataset"], "source": "local", "train_examples": 1500, "test_examples": 200}
    recipe["validation"] = {"holdout": 200}
    path = tmp_path / "nin_mnist_fast.json"
    path.write_text(json.dumps(recipe))
    out = tmp_path / "run"
    done = _cli("train", str(path), "--max-steps", "3", "--out", str(out), "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    state = json.loads(str(np.load(out / "checkpoint.npz")["state"]))
    assert state["global_step"] == 3 and state["epoch"] == 0
    with np.load(MNIST) as data:
        images = data["x_test"][:4].reshape(4, 28, 28, 1)
    _loads_and_predicts(out / "preset", images, 10)


def test_cli_finetune_on_jax_writes_a_preset_that_predicts(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    folder = tmp_path / "colours"
    for split, count in (("train", 6), ("test", 2)):
        for name, channel in (("red", 0), ("blue", 2)):
            (folder / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 90, (40, 48, 3), dtype=np.uint8)
                pixels[..., channel] = rng.integers(160, 256, (40, 48), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / split / name / f"{i}.png")
    out = tmp_path / "tuned"
    done = _cli("finetune", "nin_cifar10", str(folder), "--out", str(out), "--epochs", "1", "--batch-size", "4",
                "--min-steps", "0", "--workers", "2", "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["class_names"] == ["blue", "red"] and len(metadata["history"]) == 1
    _loads_and_predicts(out, rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8), 2)


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


def test_a_tensorflow_strategy_on_jax_names_the_one_that_runs():
    from nin_keras.train.strategy import make_strategy

    for name in ("mirrored", "multiworker"):
        with pytest.raises(ValueError, match="--strategy data_parallel"):
            make_strategy(name)
    with pytest.raises(ValueError, match="strategy must be one of"):
        make_strategy("tpu")
    assert make_strategy("default") is None
