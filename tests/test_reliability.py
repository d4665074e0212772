"""Faults from RELIABILITY.md that no module's own tests cover: each ends in a clear error.

The other faults of the table are tested beside their modules (tests/test_download.py,
test_zoo.py, test_caffe.py, test_data.py, test_train.py, test_export.py); see RELIABILITY.md.
"""

import io
import os
import tarfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest

from nin_keras.errors import DataError


def _tar_with_member(path, name: str, payload: bytes = b"x"):
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    return path


@pytest.mark.parametrize("member", ["/etc/cron.d/evil", "/tmp/train/cat/1.png"])
def test_archive_member_with_absolute_path_is_refused(tmp_path, member):
    from nin_keras.data import archive

    evil = _tar_with_member(tmp_path / "evil.tar.gz", member)
    with pytest.raises(DataError, match="unsafe member path"):
        list(archive.iter_files(evil))


def test_keras_file_with_lambda_is_refused_in_safe_mode(tmp_path):
    """A ``.keras`` file given to the visualizer may carry code; safe mode refuses it unrun."""
    from nin_keras.visualize.sources import load_model

    marker = tmp_path / "code-ran"
    inputs = keras.Input((4,))
    # The lambda writes a file when called: loading must refuse before building the model.
    # (Built from source so it closes over no variables, which Keras could not serialize.)
    touch = eval(f"lambda x: (open({str(marker)!r}, 'w').close(), x)[1]")
    outputs = keras.layers.Lambda(touch)(inputs)
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    marker.unlink()
    with pytest.raises(ValueError, match="Lambda|safe_mode|unsafe"):
        load_model(path)
    assert not marker.exists()


@pytest.fixture(scope="module")
def mnist_network():
    from nin_keras.models import nin_mnist

    return nin_mnist()


@pytest.mark.parametrize(
    "images, words",
    [
        (np.full((2, 28, 28, 1), np.nan, np.float32), "NaN or infinite"),
        (np.full((2, 28, 28, 1), -np.inf, np.float32), "NaN or infinite"),
        (np.full((2, 28, 28, 1), "7"), "dtype"),
        (np.ones((2, 28, 28, 1), bool), "dtype"),
        (np.zeros((2, 28, 28, 3), np.uint8), r"shape \(N, 28, 28, 1\)"),
        (np.zeros((2, 28, 28), np.uint8), r"shape \(N, 28, 28, 1\)"),
        (np.zeros((0, 28, 28, 1), np.uint8), "non-empty"),
    ],
    ids=["nan", "inf", "strings", "bool", "channels", "rank", "empty"],
)
def test_evaluation_rejects_bad_images_naming_the_problem(mnist_network, images, words):
    # NaN images used to give NaN probabilities whose argmax (class 0) counted as correct.
    from nin_keras.train.evaluate import evaluate_model

    with pytest.raises(ValueError, match=words):
        evaluate_model(mnist_network, images, np.zeros(len(images), np.int64))


@pytest.mark.parametrize(
    "images, words",
    [
        (np.full((2, 8, 8, 3), np.nan, np.float32), "NaN or infinite"),
        (np.full((2, 8, 8, 3), np.inf, np.float32), "NaN or infinite"),
        (np.zeros((0, 8, 8, 3), np.uint8), "empty|representative_data is required"),
        (np.zeros((2, 9, 9, 3), np.uint8), r"shape \(N, 8, 8, 3\)"),
        (np.zeros((2, 8, 8), np.uint8), r"shape \(N, 8, 8, 3\)"),
        (np.full((2, 8, 8, 3), "pixel"), "convert string"),
    ],
    ids=["nan", "inf", "empty", "shape", "rank", "strings"],
)
@pytest.mark.parametrize("argument", ["parity_data", "representative_data"])
def test_export_rejects_bad_images_before_writing_anything(tmp_path, images, words, argument):
    """Parity and int8 calibration images are checked before any conversion; nothing is written."""
    from nin_keras.export import export

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Rescaling(1 / 255),
                              keras.layers.Conv2D(4, 3), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(3, activation="softmax")], name="tiny")
    good = np.zeros((2, 8, 8, 3), np.uint8)
    kwargs = {"parity_data": (images, None), "representative_data": good} if argument == "parity_data" \
        else {"parity_data": (good, None), "representative_data": images}
    with pytest.raises(ValueError, match=words):
        export(model, ("tflite",), tmp_path / "out", quantize="int8", **kwargs)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
