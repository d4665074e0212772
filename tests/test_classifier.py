"""ImageClassifier: a preset as a raw-image model with its preprocessing inside."""

import keras
import numpy as np
import pytest

from nin_keras import zoo
from nin_keras.zoo.classifier import ImageClassifier


def _manual(preset, images):
    # Independent path: each preprocessing layer by hand, then the bare network.
    x = images.astype("float32")
    for layer in preset.preprocessing:
        x = keras.ops.convert_to_numpy(layer(x))
    return keras.ops.convert_to_numpy(preset.model(x, training=False))


@pytest.mark.parametrize("name", ["nin_mnist", "nin_cifar10"])
def test_from_preset_takes_raw_uint8_images(name):
    preset = zoo.load_preset(name)
    classifier = zoo.from_preset(name)
    assert isinstance(classifier, ImageClassifier) and classifier.backbone is not None
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, *classifier.input_shape[1:]), dtype=np.uint8)
    np.testing.assert_allclose(classifier.predict(images, verbose=0), _manual(preset, images), atol=1e-5)
    top = classifier.classify(images, top_k=2)
    probabilities = _manual(preset, images)
    assert [row[0][0] for row in top] == [preset.class_names[i] for i in probabilities.argmax(-1)]


def test_save_to_preset_round_trip(tmp_path):
    classifier = zoo.from_preset("nin_mnist")
    folder = classifier.save_to_preset(tmp_path / "copy", {"metrics": {"note": 1}})
    again = ImageClassifier.from_preset(folder)
    images = np.random.default_rng(1).integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
    np.testing.assert_array_equal(again.predict(images, verbose=0), classifier.predict(images, verbose=0))
    assert again.class_names == classifier.class_names
    assert again.metadata["metrics"] == {"note": 1}


def test_keras_file_round_trip(tmp_path):
    classifier = zoo.from_preset("nin_mnist")
    path = tmp_path / "classifier.keras"
    classifier.save(path)
    loaded = keras.saving.load_model(path)
    images = np.random.default_rng(2).integers(0, 256, (2, 28, 28, 1), dtype=np.uint8)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), classifier.predict(images, verbose=0), atol=1e-6)
    assert loaded.class_names == classifier.class_names


def test_rejects_wrong_class_names():
    backbone = zoo.load_preset("nin_mnist").model
    with pytest.raises(ValueError, match="class_names"):
        ImageClassifier(backbone, class_names=["a", "b"])
