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
from nin_keras.export import ParityTolerance, export  # noqa: E402
from nin_keras.export.metadata import metadata_path  # noqa: E402
from nin_keras.export.micro import MCU_CLASSES, arena_bytes, load_micro, micro_report  # noqa: E402
from nin_keras.export.runtime import load_tflite  # noqa: E402
from nin_keras.export.tflite import float_tensors, operator_names  # noqa: E402

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
    with pytest.raises(ExportError, match=r"keeps 1 op\(s\) in float.*CUMSUM \(.*Cumsum\)"):
        export(model, ("tflite",), tmp_path, quantize="int8", integer_io=True,
               representative_data=images, parity_data=(images, None))
    assert not list(tmp_path.iterdir())  # nothing half-written
    with pytest.raises(ExportError, match="not a TFLite flatbuffer"):
        arena_bytes(b"not a flatbuffer at all")


def _integer_only(model, tmp_path, images):
    return export(model, ("tflite",), tmp_path, quantize="int8", integer_io=True, representative_data=images,
                  parity_data=(images, None), tolerance=ParityTolerance(min_top1_agreement=0.5))["tflite"]


def _small_network():
    keras.utils.set_random_seed(0)
    return [keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")]


def test_tflm_report_names_the_node_it_cannot_prepare(tmp_path):
    """A ones_like of a run-time shape becomes BROADCAST_TO, which TFLM rejects: the integer-only
    artifact is still written (LiteRT runs it), its micro report says why TFLM cannot."""
    inputs, conv, pool, dense = _small_network()
    ones = keras.layers.Lambda(lambda x: x * keras.ops.ones_like(keras.ops.mean(x, axis=(1, 2, 3), keepdims=True)))
    model = keras.Model(inputs, dense(pool(conv(ones(inputs)))), name="broadcast")
    images = np.random.default_rng(0).integers(0, 256, (40, 8, 8, 3)).astype(np.uint8)
    path = _integer_only(model, tmp_path, images)
    report = json.loads(metadata_path(path).read_text())["micro"]
    assert report["arena_bytes"] is None and not any(report["fits"].values())
    assert "Node BROADCAST_TO" in report["tflm_error"] and "failed to prepare" in report["tflm_error"]
    assert float_tensors(path.read_bytes()) == []
    with pytest.raises(ExportError, match="BROADCAST_TO"):
        load_micro(path)


def test_a_model_that_aborts_tflm_leaves_this_process_running(tmp_path):
    """TFLM abort()s on an int8 comparison whose input scale is 1 or more (the sum of 192 pixels
    here): the probe's child process dies, this one reports it as an ExportError."""
    inputs, conv, pool, dense = _small_network()
    bright = keras.layers.Lambda(lambda x: keras.ops.where(
        keras.ops.sum(x, axis=(1, 2, 3), keepdims=True) < 20000.0, x, 0.5 * x))
    model = keras.Model(inputs, dense(pool(conv(bright(inputs)))), name="comparison")
    images = np.random.default_rng(0).integers(0, 256, (40, 8, 8, 3)).astype(np.uint8)
    path = _integer_only(model, tmp_path, images)
    assert "LESS" in operator_names(path.read_bytes())
    report = json.loads(metadata_path(path).read_text())["micro"]
    assert report["arena_bytes"] is None and "aborted (SIGABRT)" in report["tflm_error"]
    with pytest.raises(ExportError, match="aborted"):
        load_micro(path)


def test_gcn_runs_integer_only_on_tflm_as_on_litert(tmp_path):
    """GCN's norm and floor in int8 (MEAN, SQUARED_DIFFERENCE, SUM, MAXIMUM, RSQRT, MUL) load and
    run in TFLM, with LiteRT's classes."""
    from nin_keras.layers import GlobalContrastNormalization
    from nin_keras.zoo import presets

    inputs, conv, pool, dense = _small_network()
    model = presets.inference_model(keras.Sequential([inputs, conv, pool, dense]),
                                    [GlobalContrastNormalization(scale=55.0)], input_dtype="float32")
    images = np.random.default_rng(0).integers(0, 256, (40, 8, 8, 3)).astype(np.uint8)
    images[0] = 9  # a flat image: GCN's floor, 0 out
    path = _integer_only(model, tmp_path, images)
    assert {"RSQRT", "MAXIMUM"} <= set(operator_names(path.read_bytes()))
    assert float_tensors(path.read_bytes()) == []
    report = json.loads(metadata_path(path).read_text())["micro"]
    assert "tflm_error" not in report and report["arena_bytes"] % 1024 == 0
    micro, litert = (run(images.astype(np.float32)) for run in (load_micro(path), load_tflite(path)))
    assert np.mean(micro.argmax(1) == litert.argmax(1)) >= 0.95
    assert np.abs(micro - litert).max() <= 8 / 256


CIFAR_JPEG = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cifar10-jpeg.tar.gz"


@pytest.mark.skipif(not CIFAR_JPEG.exists(), reason=f"{CIFAR_JPEG} not present")
def test_compact_cifar10_integer_only_runs_on_tflm(tmp_path):
    """The whole integer-only CIFAR-10 model (GCN, int8-grid whitening, NIN) on TFLM: it fits the
    1 MB flash / 512 KB RAM class and gives LiteRT's classes on real test images."""
    from nin_keras.data.arrays import load_arrays

    path = export("nin_cifar10.caffe_compact", ("tflite",), tmp_path, quantize="int8", integer_io=True)["tflite"]
    report = json.loads(metadata_path(path).read_text())["micro"]
    assert report["flash_bytes"] == path.stat().st_size
    assert report["fits"]["1 MB flash / 512 KB RAM (Cortex-M7 class)"], report
    images, labels = load_arrays({"name": "cifar10", "test_examples": 40, "subset_seed": 3}, "test")
    images = images.astype(np.float32)
    micro, litert = load_micro(path)(images), load_tflite(path)(images)
    assert np.mean(micro.argmax(1) == litert.argmax(1)) >= 0.95
    assert np.mean(micro.argmax(1) == labels) >= 0.6


def test_int8_grid_kernel_keeps_the_whitening_output():
    """Against NumPy: the kernel lies on the converter's per-channel int8 grid (scale max|w| / 127
    unchanged, integer levels), and its output error on the data is far below plain rounding's."""
    from nin_keras.layers import ConvWhitening
    from nin_keras.layers.conv_whitening import patches
    from nin_keras.export.whitening_int8 import int8_grid_kernel

    rng = np.random.default_rng(0)
    images = np.cumsum(np.cumsum(rng.normal(size=(300, 12, 12, 3)), 1), 2)
    images /= images.std()
    layer = ConvWhitening(kernel_size=5, filter_bias=1e-3).adapt(images)
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in (layer.kernel, layer.bias))
    new_kernel, new_bias = int8_grid_kernel(kernel, bias, images, "symmetric")
    flat, new_flat = kernel.reshape(-1, 3), new_kernel.reshape(-1, 3).astype(np.float64)
    scale = np.abs(flat).max(0) / 127
    np.testing.assert_allclose(np.abs(new_flat).max(0) / 127, scale, rtol=1e-6)
    levels = new_flat / scale
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)
    rows = patches(images, 5, "symmetric")
    exact = rows @ flat + bias
    nearest = rows @ (np.round(flat / scale) * scale) + bias
    chosen = rows @ new_flat + new_bias
    error = lambda out: np.mean((out - exact) ** 2)  # noqa: E731
    assert error(chosen) < 0.5 * error(nearest), (error(chosen), error(nearest))
    assert abs(np.mean(chosen - exact)) < 1e-6  # the bias took the mean error
