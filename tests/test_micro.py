"""Integer-only TFLite artifacts and TensorFlow Lite for Microcontrollers (nin_keras.export.micro).

The artifact is the published ``nin_mnist`` preset exported with ``integer_io=True``; it is
read back from the flatbuffer (not from the converter's word), run in LiteRT and in TFLM's own
interpreter (the ``tflite-micro`` package), and its reported tensor arena is checked against
TFLM's allocator directly.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")
runtime = pytest.importorskip("tflite_micro").runtime

from nin_keras.errors import ExportError  # noqa: E402
from nin_keras.export import export  # noqa: E402
from nin_keras.export.metadata import metadata_path  # noqa: E402
from nin_keras.export.micro import MCU_CLASSES, arena_bytes, load_micro, micro_report  # noqa: E402
from nin_keras.export.tflite import float_tensors, load_tflite, operator_names  # noqa: E402

MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "mnist.npz"
needs_mnist = pytest.mark.skipif(not MNIST.exists(), reason=f"{MNIST} not present")
# Kernels TFLite ships for int8 tensors that an integer-only NIN uses (checked per artifact).
INT8_KERNELS = {"CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D", "MEAN", "SOFTMAX", "QUANTIZE", "RESHAPE",
                "FULLY_CONNECTED", "ADD", "MUL", "SUB", "PAD", "MIRROR_PAD", "RELU", "DEQUANTIZE"}


@pytest.fixture(scope="module")
def integer_mnist(tmp_path_factory):
    out = tmp_path_factory.mktemp("micro")
    with np.load(MNIST) as data:
        calibration, test = data["x_train"][:200, ..., None], (data["x_test"][:300, ..., None], data["y_test"][:300])
    paths = export("nin_mnist", ("tflite",), out, quantize="int8", integer_io=True,
                   representative_data=calibration, parity_data=test)
    return paths["tflite"], test


@needs_mnist
def test_integer_only_artifact_has_no_float_tensor_and_uint8_io(integer_mnist):
    from ai_edge_litert.interpreter import Interpreter

    path, _ = integer_mnist
    assert path.name == "nin_mnist.int8io.tflite"
    flatbuffer = path.read_bytes()
    assert float_tensors(flatbuffer) == []
    assert set(operator_names(flatbuffer)) <= INT8_KERNELS, operator_names(flatbuffer)
    interpreter = Interpreter(model_content=flatbuffer)
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert source["dtype"] == np.uint8 and target["dtype"] == np.uint8
    # Raw pixels in: calibration on 0..255 gives scale 1 and zero point 0, the identity.
    assert source["quantization"] == (1.0, 0)
    info = json.loads(metadata_path(path).read_text())
    assert info["input"]["dtype"] == "uint8" and info["input"]["quantization"]["scale"] == 1.0
    assert info["output"]["quantization"]["scale"] == pytest.approx(1 / 256)
    assert info["quantization"]["preprocessing"] == "int8"
    assert info["parity"]["passed"] and info["parity"]["top1_agreement"] >= 0.99


@needs_mnist
def test_tflite_micro_runs_it_like_litert_and_keras(integer_mnist):
    from nin_keras import zoo

    path, (images, labels) = integer_mnist
    images, labels = images[:40], labels[:40]
    micro = load_micro(path)(images.astype(np.float32))
    litert = load_tflite(path)(images.astype(np.float32))
    keras_probabilities = keras.ops.convert_to_numpy(zoo.load_preset("nin_mnist").inference_model()(images))
    # Both integer interpreters: probabilities on the 1/256 grid, and the same classes.
    np.testing.assert_allclose(micro * 256, np.round(micro * 256), atol=1e-3)
    assert np.mean(np.argmax(micro, 1) == np.argmax(litert, 1)) >= 0.975
    assert np.abs(micro - litert).max() <= 4 / 256
    assert np.mean(np.argmax(micro, 1) == np.argmax(keras_probabilities, 1)) >= 0.975
    assert np.abs(micro - keras_probabilities).max() < 0.1
    assert np.mean(np.argmax(micro, 1) == labels) >= 0.95


@needs_mnist
def test_reported_arena_is_the_smallest_that_tflm_allocates(integer_mnist):
    path, _ = integer_mnist
    flatbuffer = path.read_bytes()
    report = json.loads(metadata_path(path).read_text())["micro"]
    assert report == {**micro_report(flatbuffer), "runtime": report["runtime"]}
    assert report["flash_bytes"] == path.stat().st_size
    arena = report["arena_bytes"]
    runtime.Interpreter.from_bytes(flatbuffer, arena_size=arena)  # allocates
    with pytest.raises(RuntimeError):
        runtime.Interpreter.from_bytes(flatbuffer, arena_size=arena - 1024)
    for name, (flash, ram) in MCU_CLASSES.items():
        assert report["fits"][name] == (report["flash_bytes"] <= flash and arena <= ram)
    assert report["fits"]["1 MB flash / 512 KB RAM (Cortex-M7 class)"]  # NIN MNIST: ~300 KB, ~110 KB


def test_integer_io_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="integer_io needs quantize='int8'"):
        export("nin_mnist", ("tflite",), tmp_path, quantize="dynamic", integer_io=True)
    # An op with no int8 kernel (cumulative sum): refused, not silently left in float.
    inputs = keras.Input((4, 4, 1))
    cumulative = keras.layers.Lambda(lambda x: keras.ops.cumsum(x, axis=1))
    model = keras.Model(inputs, keras.layers.Softmax()(keras.layers.Flatten()(cumulative(inputs))), name="cumsum")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20, 4, 4, 1)).astype(np.uint8)
    with pytest.raises(ExportError, match="int8|float"):
        export(model, ("tflite",), tmp_path, quantize="int8", integer_io=True,
               representative_data=images, parity_data=(images, None))
    assert not list(tmp_path.iterdir())  # nothing half-written
    with pytest.raises(ExportError, match="not a TFLite flatbuffer"):
        arena_bytes(b"not a flatbuffer at all")
