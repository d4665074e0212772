"""ImageClassifier: a preset as a raw-image model with its preprocessing inside; the one way in
(``ImageClassifier.from_preset``), and the deprecated aliases that still lead there."""

import re
import warnings

import keras
import numpy as np
import pytest

from nin_keras import zoo
from nin_keras.zoo.classifier import ImageClassifier
from nin_keras.zoo.preset_loader import read_preset


def _manual(contents, images):
    # Independent path: the folder's contents as read, each preprocessing layer by hand, then the bare network.
    x = images.astype("float32")
    for layer in contents.preprocessing:
        x = keras.ops.convert_to_numpy(layer(x))
    return keras.ops.convert_to_numpy(contents.model(x, training=False))


def _digits(n=4, seed=3):
    return np.random.default_rng(seed).integers(0, 256, (n, 28, 28, 1), dtype=np.uint8)


@pytest.mark.parametrize("name", ["nin_mnist", "nin_cifar10"])
def test_from_preset_takes_raw_uint8_images(name):
    contents = read_preset(name)
    classifier = ImageClassifier.from_preset(name)
    assert classifier.backbone is not None and classifier.input.dtype == "float32"
    assert classifier.class_names == contents.class_names and classifier.metadata == contents.metadata
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, *classifier.input_shape[1:]), dtype=np.uint8)
    np.testing.assert_allclose(classifier.predict(images, verbose=0), _manual(contents, images), atol=1e-5)
    top = classifier.classify(images, top_k=2)
    probabilities = _manual(contents, images)
    assert [row[0][0] for row in top] == [contents.class_names[i] for i in probabilities.argmax(-1)]


def test_save_to_preset_round_trip(tmp_path):
    classifier = ImageClassifier.from_preset("nin_mnist")
    folder = classifier.save_to_preset(tmp_path / "copy", {"metrics": {"note": 1}})
    again = ImageClassifier.from_preset(folder)
    images = np.random.default_rng(1).integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
    np.testing.assert_array_equal(again.predict(images, verbose=0), classifier.predict(images, verbose=0))
    assert again.class_names == classifier.class_names
    assert again.metadata["metrics"] == {"note": 1}


def test_keras_file_round_trip(tmp_path):
    classifier = ImageClassifier.from_preset("nin_mnist")
    path = tmp_path / "classifier.keras"
    classifier.save(path)
    loaded = keras.saving.load_model(path)
    images = np.random.default_rng(2).integers(0, 256, (2, 28, 28, 1), dtype=np.uint8)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), classifier.predict(images, verbose=0), atol=1e-6)
    assert loaded.class_names == classifier.class_names


def test_rejects_wrong_class_names():
    backbone = ImageClassifier.from_preset("nin_mnist").backbone
    with pytest.raises(ValueError, match="class_names"):
        ImageClassifier(backbone, class_names=["a", "b"])


# --------------------------------------------------------------------------- deprecated aliases
# Each warns naming ImageClassifier, keeps its old input dtype, and gives the probabilities of the
# one entry on the same images.

@pytest.fixture(scope="module")
def reference():
    classifier = ImageClassifier.from_preset("nin_mnist")
    return classifier, classifier.predict(_digits(), verbose=0)


def _warns_naming(replacement):
    return pytest.warns(DeprecationWarning, match=re.escape(replacement))


def test_zoo_from_preset_is_a_deprecated_alias(reference):
    with _warns_naming("ImageClassifier.from_preset"):
        classifier = zoo.from_preset("nin_mnist")
    assert isinstance(classifier, ImageClassifier) and classifier.input.dtype == "float32"
    np.testing.assert_array_equal(classifier.predict(_digits(), verbose=0), reference[1])


def test_load_preset_is_a_deprecated_alias_returning_the_preset(reference):
    with _warns_naming("ImageClassifier.from_preset"):
        preset = zoo.load_preset("nin_mnist")
    assert isinstance(preset, zoo.Preset) and preset.architecture == "nin_mnist" and preset.path.is_dir()
    assert preset.metadata == reference[0].metadata and preset.class_names == reference[0].class_names
    np.testing.assert_array_equal(_manual(preset, _digits()), reference[1])


def _old_preset() -> zoo.Preset:
    """``zoo.load_preset("nin_mnist")`` without its own warning (tested above), for its methods' tests."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return zoo.load_preset("nin_mnist")


def test_preset_classifier_is_a_deprecated_alias_with_a_float32_input(reference):
    preset = _old_preset()
    with _warns_naming("ImageClassifier.from_preset"):
        classifier = preset.classifier()
    assert isinstance(classifier, ImageClassifier) and classifier.input.dtype == "float32"
    np.testing.assert_array_equal(classifier.predict(_digits(), verbose=0), reference[1])


def test_preset_inference_model_is_a_deprecated_alias_with_a_uint8_input(reference):
    preset = _old_preset()
    with _warns_naming("ImageClassifier.from_preset(preset, input_dtype='uint8')"):
        model = preset.inference_model()
    assert isinstance(model, ImageClassifier) and model.input.dtype == "uint8"
    np.testing.assert_array_equal(model.predict(_digits(), verbose=0), reference[1])


def test_zoo_inference_model_is_a_deprecated_alias_with_a_uint8_input(reference):
    classifier = reference[0]
    with _warns_naming("ImageClassifier(model, preprocessing, input_dtype='uint8')"):
        model = zoo.inference_model(classifier.backbone, classifier.preprocessing)
    assert isinstance(model, ImageClassifier) and model.input.dtype == "uint8"
    assert model.name == f"{classifier.backbone.name}_inference"
    np.testing.assert_array_equal(model.predict(_digits(), verbose=0), reference[1])
    same = ImageClassifier(classifier.backbone, classifier.preprocessing, input_dtype="uint8")
    np.testing.assert_array_equal(same.predict(_digits(), verbose=0), reference[1])


def test_the_deprecated_aliases_warn_at_their_caller():
    # stacklevel: the warning names the line that called the alias, so users find their own code.
    with pytest.warns(DeprecationWarning) as caught:
        zoo.from_preset("nin_mnist")
    ours = [record for record in caught if "is deprecated; use" in str(record.message)]
    assert [record.filename for record in ours] == [__file__]
