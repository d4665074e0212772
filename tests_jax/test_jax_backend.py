"""Keras 3 on JAX without TensorFlow: layers, presets, predict, a fit step, and parity with TF.

Runs in ``.venv-jax`` (jax, keras, h5py, numpy, pillow, filelock, pytest; no TensorFlow) through
``scripts/test_jax.sh``, which first writes TensorFlow's outputs with the main venv
(``tests_jax/tf_reference.py``) and passes the file in ``$NIN_KERAS_TF_REFERENCE``. The same run
also executes ``tests/test_layers.py`` and ``tests/test_models.py`` on JAX.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cases  # noqa: E402
from nin_keras import zoo  # noqa: E402

REFERENCE_ENV = "NIN_KERAS_TF_REFERENCE"
# The parts of the library built on tf.data, tf.distribute and the TensorFlow exporters.
# nin_keras.data itself imports without TensorFlow (presets use its input policy, training its
# readers); its tf.data pipeline does not. Training runs on JAX (tests_jax/test_train_jax.py); its
# tf.distribute loop is TensorFlow's.
TENSORFLOW_ONLY = ("nin_keras.data.pipeline", "nin_keras.train.loop", "nin_keras.export.tflite",
                   "nin_keras.export.serving")


def test_this_is_jax_without_tensorflow():
    # Everything below would prove nothing if TensorFlow were importable or the backend were not JAX.
    assert keras.backend.backend() == "jax"
    assert importlib.util.find_spec("tensorflow") is None
    assert "tensorflow" not in sys.modules


@pytest.fixture(scope="module")
def tf_reference():
    path = os.environ.get(REFERENCE_ENV)
    if not path:
        pytest.skip(f"${REFERENCE_ENV} is not set: scripts/test_jax.sh writes TensorFlow's outputs first")
    with np.load(path) as data:
        return dict(data)


@pytest.mark.parametrize("name", sorted(cases.LAYERS))
def test_layer_matches_tensorflow(name, tf_reference):
    x = tf_reference[f"layer/{name}/x"]
    np.testing.assert_array_equal(x, cases.layer_inputs(name))  # both sides built the same case
    out = keras.ops.convert_to_numpy(cases.build_layer(name)(x))
    expected = tf_reference[f"layer/{name}/y"]
    assert out.shape == expected.shape
    assert np.abs(out - expected).max() <= cases.TOLERANCE * max(1.0, np.abs(expected).max())


@pytest.mark.parametrize("name", cases.PRESETS)
def test_preset_predict_matches_tensorflow(name, tf_reference):
    # The shipped weights, sha256-checked, read with h5py alone.
    classifier = zoo.ImageClassifier.from_preset(name, input_dtype="uint8")
    images = tf_reference[f"preset/{name}/x"]
    expected = tf_reference[f"preset/{name}/y"]
    probabilities = classifier.predict(images, verbose=0)
    assert probabilities.shape == expected.shape == (cases.IMAGES_PER_PRESET, len(classifier.class_names))
    assert np.abs(probabilities - expected).max() <= cases.TOLERANCE
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert np.array_equal(probabilities.argmax(axis=1), expected.argmax(axis=1))


def test_fit_steps_on_a_preset_network_lower_its_training_loss():
    network = zoo.load_preset("nin_mnist.fast").model
    rng = np.random.default_rng(7)
    x = rng.uniform(0, 1, size=(16, *network.input_shape[1:])).astype("float32")
    y = rng.integers(0, 10, size=16)
    network.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    before = [keras.ops.convert_to_numpy(w).copy() for w in network.trainable_weights]
    losses = network.fit(x, y, batch_size=16, epochs=5, verbose=0).history["loss"]
    # Training-mode loss: on noise images the BN statistics learnt on MNIST make inference-mode
    # loss meaningless, but five Adam steps on one batch must fit that batch better.
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    unchanged = [w.path for w, b in zip(network.trainable_weights, before)
                 if np.array_equal(keras.ops.convert_to_numpy(w), b)]
    assert unchanged == []
    assert np.all(np.isfinite(network.predict(x, verbose=0)))


@pytest.mark.parametrize("module", TENSORFLOW_ONLY)
def test_tensorflow_only_modules_say_so(module):
    sys.modules.pop(module, None)
    with pytest.raises(ImportError, match="requires TensorFlow") as info:
        importlib.import_module(module)
    assert module in str(info.value)


def test_the_tf_data_names_of_nin_keras_data_say_so_on_first_use():
    import nin_keras.data

    assert nin_keras.data.default_policy  # the TensorFlow-free part works
    for module in ("nin_keras.data.pipeline", "nin_keras.data.sources"):
        sys.modules.pop(module, None)
    with pytest.raises(ImportError, match="nin_keras.data.pipeline requires TensorFlow"):
        nin_keras.data.make_pipeline


def test_visualize_needs_tensorflow_too_and_says_which_module():
    # Its deconvnet uses tf.GradientTape, its curves the training history: the first one imported names itself.
    sys.modules.pop("nin_keras.visualize", None)
    with pytest.raises(ImportError, match=r"^nin_keras\.\w+(\.\w+)* requires TensorFlow"):
        importlib.import_module("nin_keras.visualize")


def test_the_deploy_path_imports_without_tensorflow():
    """Running exported artifacts needs NumPy and a runtime, not TensorFlow (tests/test_deploy.py
    runs them); the export package itself loads its TensorFlow parts on first use."""
    from nin_keras.deploy import Predictor
    from nin_keras.export import runtime

    assert callable(runtime.load_onnx) and Predictor.__name__ == "Predictor"
    assert "tensorflow" not in sys.modules

