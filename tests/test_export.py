"""Tests for nin_keras.export: SavedModel / TFLite / ONNX export, parity, metadata, Predictor, CLI.

Every artifact is re-run in a fresh Python process with only its own runtime (TensorFlow,
LiteRT or ONNX Runtime) and compared with the Keras model in this process. Real images come from
the local data sets in ../shared (MNIST, the CIFAR-10 JPEG copy); tests needing them skip when
they are absent. Full ZCA-baked CIFAR-10 exports take minutes on 2 cores and are marked slow.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("tf2onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("ai_edge_litert")

from nin_keras import cli, zoo  # noqa: E402
from nin_keras.errors import ExportError  # noqa: E402
from nin_keras.deploy import Predictor  # noqa: E402
from nin_keras.export import ParityTolerance, export, parity_report  # noqa: E402
from nin_keras.export import samples  # noqa: E402
from nin_keras.export.metadata import metadata_path, weights_sha256  # noqa: E402
from nin_keras.io_utils import sha256_file  # noqa: E402
from nin_keras.zoo import presets, registry  # noqa: E402
from nin_keras.zoo.preset_writer import save_preset  # noqa: E402
from nin_keras.zoo.builder import create_model  # noqa: E402

FORMATS = ("savedmodel", "tflite", "onnx")
# BatchNorm variants differ from their plain twins by folded BatchNormalization layers only:
# exporting them too doubles the cost, so they run with -m slow.
FAST_ARCHITECTURES = [n for n in registry.list_models() if not n.endswith("_bn")]
SLOW_ARCHITECTURES = [n for n in registry.list_models() if n.endswith("_bn")]

# Runs in a fresh interpreter with nothing but the artifact's runtime: no nin_keras import.
RUNTIME_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    results = {}
    for i, job in enumerate(sys.argv[2:]):
        images_path, path = job.split("::")
        images = np.load(images_path)
        if path.endswith(".tflite"):
            from ai_edge_litert.interpreter import Interpreter
            interpreter = Interpreter(model_path=path)
            detail = interpreter.get_input_details()[0]
            assert list(detail["shape_signature"][:1]) == [-1], detail["shape_signature"]
            interpreter.resize_tensor_input(detail["index"], list(images.shape))
            interpreter.allocate_tensors()
            interpreter.set_tensor(detail["index"], images)
            interpreter.invoke()
            out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        elif path.endswith(".onnx"):
            import onnx, onnxruntime
            onnx.checker.check_model(onnx.load(path))
            session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
            assert session.get_inputs()[0].shape[0] == "batch", session.get_inputs()[0].shape
            out = session.run(["probabilities"], {"images": images})[0]
        else:
            import tensorflow as tf
            serve = tf.saved_model.load(path).signatures["serving_default"]
            out = serve(images=tf.constant(images))["probabilities"].numpy()
        results[str(i)] = out
    np.savez(sys.argv[1], **results)
""")


def run_fresh(jobs: list[tuple[Path, np.ndarray]], tmp: Path) -> list[np.ndarray]:
    """Probabilities of each ``(artifact, images)`` job, all computed in one fresh Python process."""
    args = []
    for i, (path, images) in enumerate(jobs):
        np.save(tmp / f"images{i}.npy", np.ascontiguousarray(images, np.float32))
        args.append(f"{tmp / f'images{i}.npy'}::{path}")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", RUNTIME_SCRIPT, str(tmp / "out.npz"), *args],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    with np.load(tmp / "out.npz") as out:
        return [out[str(i)] for i in range(len(jobs))]


def keras_probabilities(model: keras.Model, images: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(np.asarray(images, np.float32), training=False))


def real_images(dataset: str, count: int, shape) -> tuple[np.ndarray, np.ndarray]:
    images, labels, described = samples.parity_images(dataset, count, shape)
    if labels is None:
        pytest.skip(f"no local copy of {dataset}: {described}")
    return images, labels


def pretrained_preset(name: str):
    """The published preset ``name`` if the zoo has weights for it here, else skip."""
    if not registry.get_model_entry(name).pretrained:
        pytest.skip(f"no published weights for {name} in this checkout")
    return zoo.load_preset(name)


def tiny_model(name: str = "tiny") -> keras.Model:
    """A 8x8x3 inference model from stock layers: scale, conv, GAP, softmax."""
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Rescaling(1 / 255),
                             keras.layers.Conv2D(6, 3, activation="relu"),
                             keras.layers.GlobalAveragePooling2D(),
                             keras.layers.Dense(4, activation="softmax")], name=name)


# --------------------------------------------------------------------------- parity rules


def test_parity_report_float_bounds_and_ties():
    rng = np.random.default_rng(0)
    reference = rng.dirichlet(np.ones(5), size=20)
    passed = parity_report(reference, reference + 5e-5)
    assert passed["passed"] and passed["max_abs_diff"] == pytest.approx(5e-5)
    failed = parity_report(reference, reference + 2e-4)
    assert not failed["passed"] and "max" in failed["failures"][0]
    # A swapped top-1 on a clear winner fails; a swap between exact ties does not.
    swapped = reference.copy()
    swapped[0] = np.roll(reference[0], 1)
    assert parity_report(reference, swapped)["top1_mismatches"] == 1
    tied = np.tile([0.3, 0.3, 0.2, 0.1, 0.1], (3, 1))
    flipped = tied.copy()
    flipped[:, 1] += 1e-6
    report = parity_report(tied, flipped)
    assert report["passed"] and report["top1_agreement"] == 0.0 and report["top1_mismatches"] == 0


def test_parity_report_quantized_agreement_and_accuracy():
    rng = np.random.default_rng(1)
    reference = rng.dirichlet(np.ones(10), size=200)
    labels = reference.argmax(1).copy()
    labels[:20] = (labels[:20] + 1) % 10  # Keras accuracy 90%
    candidate = reference.copy()
    candidate[20:28] = np.roll(candidate[20:28], 1, axis=1)  # 8 changed predictions
    changed = (candidate.argmax(1) != reference.argmax(1)).sum()
    report = parity_report(reference, candidate, labels, quantize="int8")
    assert report["top1_agreement"] == pytest.approx(1 - changed / 200)
    assert report["keras_accuracy"] == pytest.approx(90.0)
    expected = 100 * np.mean(candidate.argmax(1) == labels)
    assert report["artifact_accuracy"] == pytest.approx(expected)
    assert report["accuracy_drop"] == pytest.approx(90.0 - expected)
    assert report["passed"] is bool(changed / 200 <= 0.05 and 90.0 - expected <= 1.0)
    strict = parity_report(reference, candidate, labels, quantize="int8",
                           tolerance=ParityTolerance(max_accuracy_drop=0.0))
    assert not strict["passed"] and any("accuracy drop" in f for f in strict["failures"])


@pytest.mark.parametrize("count, wrong, passes", [(64, 1, True), (64, 2, False), (500, 5, True), (500, 6, False)])
def test_accuracy_drop_bound_is_at_least_one_images_share(count, wrong, passes):
    """64 parity images cannot show a drop under 1.5625 points: one changed answer passes, two fail;
    on 500 images the 1-point bound holds as it is (5 answers pass, 6 fail)."""
    reference = np.eye(10)[np.arange(count) % 10] * 0.9 + 0.01
    labels = reference.argmax(1)
    candidate = reference.copy()
    candidate[:wrong] = np.roll(candidate[:wrong], 1, axis=1)  # right before, wrong now
    report = parity_report(reference, candidate, labels, quantize="int8")
    assert report["accuracy_drop"] == pytest.approx(100 * wrong / count)
    assert report["max_accuracy_drop"] == pytest.approx(max(1.0, 100 / count))
    assert report["passed"] is passes


# --------------------------------------------------------------------------- every architecture


def _export_architecture(name: str, tmp_path: Path) -> None:
    model = create_model(name)
    paths = export(model, ("tflite",), tmp_path, parity_samples=8)
    info = json.loads(metadata_path(paths["tflite"]).read_text())
    assert info["parity"]["passed"] and info["parity"]["count"] == 8
    assert info["parity"]["max_abs_diff"] <= 1e-4
    assert info["sha256"] == sha256_file(paths["tflite"])
    assert info["bytes"] == paths["tflite"].stat().st_size
    assert info["input"]["shape"] == [None, *model.input_shape[1:]]
    assert info["source"]["weights_sha256"] == weights_sha256(
        presets.inference_model(model, input_dtype="float32"))
    assert len(info["class_names"]) == model.output_shape[-1]
    assert info["dataset"] == registry.get_model_entry(name).dataset


@pytest.mark.parametrize("name", FAST_ARCHITECTURES)
def test_every_architecture_exports_to_tflite_with_parity(name, tmp_path):
    _export_architecture(name, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW_ARCHITECTURES)
def test_batchnorm_architectures_export_to_tflite_with_parity(name, tmp_path):
    _export_architecture(name, tmp_path)


# --------------------------------------------------------------------------- three formats, fresh process


@pytest.fixture(scope="module")
def float_exports(tmp_path_factory):
    """NIN MNIST (raw pixels in) and NIN CIFAR-10 (network only: the ZCA-baked export is slow)
    exported to all three formats; pretrained weights where the zoo has them."""
    out = tmp_path_factory.mktemp("float_exports")
    cases = {}
    for name, include_preprocessing in (("nin_mnist", True), ("nin_cifar10", False)):
        if registry.get_model_entry(name).pretrained:
            preset = zoo.load_preset(name)
            network, preprocessing = preset.model, preset.preprocessing
        else:
            keras.utils.set_random_seed(0)
            network = create_model(name)
            preprocessing = samples_preprocessing(name)
        inference = presets.inference_model(network, preprocessing, input_dtype="float32")
        paths = export(inference, FORMATS, out / name, parity_samples=32,
                       include_preprocessing=include_preprocessing)
        dataset = registry.get_model_entry(name).dataset
        images, labels = real_images(dataset, 40, network.input_shape[1:])
        if include_preprocessing:
            inputs, keras_model = images.astype(np.float32), inference
        else:
            stack = keras.Sequential([keras.Input(network.input_shape[1:]), *preprocessing])
            inputs, keras_model = keras_probabilities(stack, images), network
        cases[name] = dict(paths=paths, inputs=inputs, labels=labels,
                           preprocessing=[type(layer).__name__ for layer in preprocessing],
                           reference=keras_probabilities(keras_model, inputs))
    # One fresh process runs all six artifacts, each on a batch of 40.
    jobs = [(cases[name]["paths"][fmt], cases[name]["inputs"]) for name in cases for fmt in FORMATS]
    outputs = iter(run_fresh(jobs, out))
    for name in cases:
        cases[name]["fresh"] = {fmt: next(outputs) for fmt in FORMATS}
    return cases


def samples_preprocessing(name: str) -> list[keras.layers.Layer]:
    """The data set's preprocessing layers without ZCA (fitting a 3072-d ZCA costs more than the
    export; the ZCA-baked export is covered by the slow pretrained test)."""
    from nin_keras.data import dataset_info
    from nin_keras.layers import ZCAWhitening

    layers = dataset_info(registry.get_model_entry(name).dataset).preprocessing_layers()
    return [layer for layer in layers if not isinstance(layer, ZCAWhitening)]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", ["nin_mnist", "nin_cifar10"])
def test_artifact_in_fresh_process_matches_keras(float_exports, name, fmt):
    case = float_exports[name]
    fresh, reference = case["fresh"][fmt], case["reference"]
    assert fresh.shape == reference.shape == (40, 10)
    assert np.abs(fresh - reference).max() <= 1e-4
    np.testing.assert_array_equal(fresh.argmax(1), reference.argmax(1))
    info = json.loads(metadata_path(case["paths"][fmt]).read_text())
    assert info["format"] == fmt and info["parity"]["passed"]
    assert info["input"]["shape"][0] is None and info["output"]["shape"] == [None, 10]
    assert info["include_preprocessing"] is (name == "nin_mnist")
    assert [layer["class_name"] for layer in info["preprocessing"]] == case["preprocessing"]
    assert info["parity"]["images"].startswith(registry.get_model_entry(name).dataset + " test")


@pytest.mark.parametrize("name", ["nin_mnist", "nin_cifar10"])
def test_openvino_runs_the_onnx_artifact_like_keras(float_exports, name):
    from nin_keras.export.openvino import load_openvino

    case = float_exports[name]
    run = load_openvino(case["paths"]["onnx"], num_threads=1)
    out = run(case["inputs"])
    assert np.abs(out - case["reference"]).max() <= 1e-4  # float32 precision is the default
    np.testing.assert_array_equal(out.argmax(1), case["reference"].argmax(1))
    # The batch stays dynamic: a smaller batch after the first gives the same rows.
    np.testing.assert_allclose(run(case["inputs"][:3]), out[:3], atol=1e-6)
    with pytest.raises(ValueError, match="precision"):
        load_openvino(case["paths"]["onnx"], precision="int4")


def test_predictor_top1_matches_keras_on_image_files(float_exports, tmp_path):
    from PIL import Image

    case = float_exports["nin_mnist"]
    images = case["inputs"][:6].astype(np.uint8)
    files = []
    for i, image in enumerate(images):
        files.append(tmp_path / f"digit{i}.png")
        Image.fromarray(image[..., 0]).save(files[-1])
    expected = case["reference"][:6].argmax(1)
    names = [str(d) for d in range(10)]
    predictors = [Predictor(case["paths"][fmt]) for fmt in FORMATS]
    predictors.append(Predictor(case["paths"]["onnx"], runtime="openvino"))
    for predictor in predictors:
        assert predictor.runtime in ("tensorflow", "litert", "onnxruntime", "openvino")
        top = predictor.classify([str(f) for f in files], top_k=3)
        assert [t[0][0] for t in top] == [names[c] for c in expected]
        assert all(len(t) == 3 and t[0][1] >= t[1][1] >= t[2][1] for t in top)
        # Arrays: one HW image, one HWC image, a batch; all give the same answer as the files.
        np.testing.assert_allclose(predictor.predict_proba(images[0, ..., 0]),
                                   predictor.predict_proba(images[:1]), atol=1e-6)
        np.testing.assert_allclose(predictor.predict_proba(images),
                                   case["reference"][:6], atol=1e-4)


def test_predictor_without_metadata_reads_the_artifact(float_exports, tmp_path):
    import shutil

    case = float_exports["nin_mnist"]
    images = case["inputs"][:4].astype(np.uint8)
    for fmt, path in case["paths"].items():
        bare = tmp_path / path.name
        (shutil.copytree if path.is_dir() else shutil.copy)(path, bare)
        predictor = Predictor(bare)
        assert predictor.metadata == {} and predictor.input_shape == (28, 28, 1)
        top = predictor.classify(images, top_k=1)
        assert [t[0][0] for t in top] == [str(c) for c in case["reference"][:4].argmax(1)]


@pytest.mark.parametrize("bad, message", [
    (np.zeros((0, 28, 28, 1), np.uint8), "empty"),
    (np.zeros((2, 32, 32, 3), np.uint8), "shape"),
    (np.zeros((2, 28, 28, 1), np.int32), "dtype"),
    (np.full((1, 28, 28, 1), np.nan, np.float32), "NaN"),
    (np.full((1, 28, 28, 1), 300.0, np.float32), r"\[0, 255\]"),
    ([], "empty"),
])
def test_predictor_rejects_bad_input(float_exports, bad, message):
    predictor = Predictor(float_exports["nin_mnist"]["paths"]["onnx"])
    with pytest.raises(ValueError, match=message):
        predictor.classify(bad)


def test_predictor_rejects_bad_files_and_paths(float_exports, tmp_path):
    predictor = Predictor(float_exports["nin_mnist"]["paths"]["tflite"])
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="broken.png"):
        predictor.classify([str(tmp_path / "broken.png")])
    with pytest.raises(ValueError, match="top_k"):
        predictor.classify(np.zeros((1, 28, 28, 1), np.uint8), top_k=0)
    with pytest.raises(ValueError, match="does not exist"):
        Predictor(tmp_path / "missing.onnx")
    (tmp_path / "model.h5").write_bytes(b"")
    with pytest.raises(ValueError, match="not a SavedModel"):
        Predictor(tmp_path / "model.h5")
    with pytest.raises(ValueError, match="runtime 'openvino' does not run tflite"):
        Predictor(float_exports["nin_mnist"]["paths"]["tflite"], runtime="openvino")


# --------------------------------------------------------------------------- quantization


def test_int8_exports_report_agreement_and_accuracy(tmp_path):
    """Full-integer TFLite and static QDQ ONNX on real MNIST: agreement and accuracy recorded and
    recomputed here from the artifacts' own outputs."""
    if registry.get_model_entry("nin_mnist").pretrained:
        preset = zoo.load_preset("nin_mnist")
        inference = preset.inference_model(input_dtype="float32")
        tolerance = ParityTolerance()  # a trained model must meet the documented bounds
    else:
        keras.utils.set_random_seed(0)
        inference = presets.inference_model(create_model("nin_mnist"),
                                            [keras.layers.Rescaling(1 / 255)], input_dtype="float32")
        tolerance = ParityTolerance(min_top1_agreement=0.0, max_accuracy_drop=100.0)
    images, labels = real_images("mnist", 64, (28, 28, 1))
    paths = export(inference, ("tflite", "onnx"), tmp_path, quantize="int8",
                   parity_data=(images, labels), calibration_samples=32, tolerance=tolerance)
    reference = keras_probabilities(inference, images)
    outputs = run_fresh([(paths["tflite"], images), (paths["onnx"], images)], tmp_path)
    for fmt, out in zip(("tflite", "onnx"), outputs):
        assert paths[fmt].name == f"{inference.name}.int8.{fmt}"
        info = json.loads(metadata_path(paths[fmt]).read_text())
        parity = info["parity"]
        assert info["quantization"]["mode"] == "int8"
        assert info["quantization"]["calibration"]["images"] == 32
        assert "train" in info["quantization"]["calibration"]["source"]
        assert parity["top1_agreement"] == pytest.approx(np.mean(out.argmax(1) == reference.argmax(1)))
        assert parity["artifact_accuracy"] == pytest.approx(100 * np.mean(out.argmax(1) == labels))
        assert parity["keras_accuracy"] == pytest.approx(100 * np.mean(reference.argmax(1) == labels))
    assert json.loads(metadata_path(paths["tflite"]).read_text())["quantization"]["ops"]["integer"]
    # The ONNX body runs in int8 from the first convolution to the classifier's global average:
    # after ONNX Runtime's QDQ fusion, one QuantizeLinear in, one DequantizeLinear out, no float
    # convolution or ReLU between them.
    fused = onnx_runtime_graph(paths["onnx"], tmp_path / "fused.onnx")
    assert fused.count("QuantizeLinear") == 1 and fused.count("DequantizeLinear") == 1, fused
    assert "Conv" not in fused and "Relu" not in fused and fused.count("QLinearConv") == 9, fused
    assert fused.index("QuantizeLinear") < fused.index("QLinearConv")
    assert fused.index("DequantizeLinear") > len(fused) - 1 - fused[::-1].index("QLinearConv")
    # OpenVINO runs the same QDQ graph with its own int8 kernels.
    from nin_keras.export.openvino import load_openvino

    openvino = load_openvino(paths["onnx"])(images)
    assert np.mean(openvino.argmax(1) == reference.argmax(1)) >= tolerance.min_top1_agreement
    # int8 stores weights in a quarter of the float32 bytes (plus scales).
    floats = export(inference, ("onnx",), tmp_path / "float", parity_data=(images, labels))
    assert paths["onnx"].stat().st_size < 0.4 * floats["onnx"].stat().st_size


def onnx_runtime_graph(path: Path, optimized: Path) -> list[str]:
    """Op types of ``path`` after ONNX Runtime's hardware-independent graph optimizations."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(optimized)
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return [node.op_type for node in onnx.load(optimized).graph.node]


@pytest.mark.parametrize("count", [13, 37])  # a prime, and one leaving a short last batch of 16
def test_int8_onnx_calibrates_on_any_number_of_images(tmp_path, count):
    images = np.random.default_rng(0).integers(0, 256, (count, 8, 8, 3), np.uint8)
    paths = export(tiny_model(), ("onnx",), tmp_path, quantize="int8", representative_data=images,
                   parity_data=(images, None), tolerance=ParityTolerance(min_top1_agreement=0.5))
    info = json.loads(metadata_path(paths["onnx"]).read_text())
    assert info["quantization"]["calibration"]["images"] == count and info["parity"]["passed"]


def test_float16_and_dynamic_tflite_pass_their_bounds(tmp_path):
    model = tiny_model()
    images = np.random.default_rng(0).integers(0, 256, (16, 8, 8, 3), np.uint8)
    paths = export(model, ("tflite",), tmp_path, quantize="float16", parity_data=(images, None))
    info = json.loads(metadata_path(paths["tflite"]).read_text())
    assert info["parity"]["atol"] == ParityTolerance().float16_atol and info["parity"]["passed"]
    dynamic = export(model, ("tflite", "onnx"), tmp_path, quantize="dynamic",
                     parity_data=(images, None), tolerance=ParityTolerance(min_top1_agreement=0.5))
    assert {p.name for p in dynamic.values()} == {"tiny.dynamic.tflite", "tiny.dynamic.onnx"}


def test_quantize_argument_checks(tmp_path):
    with pytest.raises(ValueError, match="float16"):
        export(tiny_model(), ("onnx",), tmp_path, quantize="float16")
    with pytest.raises(ValueError, match="quantize"):
        export(tiny_model(), ("tflite",), tmp_path, quantize="int4")
    with pytest.raises(ValueError, match="formats"):
        export(tiny_model(), ("coreml",), tmp_path)
    with pytest.raises(ValueError, match="representative_data"):
        export(tiny_model(), ("tflite",), tmp_path, quantize="int8",
               parity_data=(np.zeros((2, 8, 8, 3), np.uint8), None))
    assert not any(tmp_path.iterdir())


# --------------------------------------------------------------------------- failures leave nothing


@keras.saving.register_keras_serializable(package="nin_keras_tests")
class MatrixInverse(keras.layers.Layer):
    """Inverts a per-image matrix: TensorFlow's MatrixInverse has no TFLite built-in kernel."""

    def call(self, x):
        square = keras.ops.reshape(x, (-1, 4, 4))
        eye = keras.ops.eye(4)
        return keras.ops.reshape(keras.ops.linalg.inv(square + 300 * eye), (-1, 16))


def test_flex_ops_are_rejected_and_leave_nothing(tmp_path):
    model = keras.Sequential([keras.Input((4, 4, 1)), MatrixInverse(),
                              keras.layers.Dense(3, activation="softmax")], name="flexy")
    images = np.random.default_rng(0).integers(0, 256, (4, 4, 4, 1), np.uint8)
    with pytest.raises(ExportError, match="Flex|SELECT_TF_OPS"):
        export(model, ("tflite",), tmp_path, parity_data=(images, None))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_failed_parity_leaves_no_artifact_and_keeps_the_old_one(fmt, tmp_path):
    model = tiny_model()
    images = np.random.default_rng(0).integers(0, 256, (8, 8, 8, 3), np.uint8)
    impossible = ParityTolerance(float32_atol=-1.0)
    with pytest.raises(ExportError, match="parity"):
        export(model, (fmt,), tmp_path, parity_data=(images, None), tolerance=impossible)
    assert list(tmp_path.iterdir()) == []
    # A good export, then a failing one over it: the good artifact and metadata survive intact.
    path = export(model, (fmt,), tmp_path, parity_data=(images, None))[fmt]
    before = sorted(p.name for p in tmp_path.iterdir())
    digest = json.loads(metadata_path(path).read_text())["sha256"]
    with pytest.raises(ExportError):
        export(model, (fmt,), tmp_path, parity_data=(images, None), tolerance=impossible)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert json.loads(metadata_path(path).read_text())["sha256"] == digest


def test_predictor_classify_is_the_method_and_predict_its_deprecated_alias(tmp_path):
    model = tiny_model()
    images = np.random.default_rng(3).integers(0, 256, (6, 8, 8, 3), np.uint8)
    path = export(model, ("onnx",), tmp_path, parity_data=(images, None))["onnx"]
    predictor = Predictor(path)
    expected = keras_probabilities(model, images)
    top = predictor.classify(images, top_k=2)
    assert [[int(name) for name, _ in row] for row in top] == np.argsort(-expected, axis=1)[:, :2].tolist()
    with pytest.warns(DeprecationWarning, match="use Predictor.classify"):
        assert predictor.predict(images, top_k=2) == top


def test_failed_parity_leaves_no_empty_folder_and_names_the_flag_that_keeps_the_artifact(tmp_path):
    model = tiny_model()
    images = np.random.default_rng(0).integers(0, 256, (8, 8, 8, 3), np.uint8)
    impossible = ParityTolerance(float32_atol=-1.0)
    out = tmp_path / "new" / "exported"
    with pytest.raises(ExportError, match=r"parity check .*nothing written \(pass accept_parity_failure=True"):
        export(model, ("tflite", "onnx"), out, parity_data=(images, None), tolerance=impossible)
    assert not out.exists()  # before: an empty folder stayed
    with pytest.warns(UserWarning, match="failed the parity check.*kept"):
        paths = export(model, ("tflite",), out, parity_data=(images, None), tolerance=impossible,
                       accept_parity_failure=True)
    parity = json.loads(metadata_path(paths["tflite"]).read_text())["parity"]
    assert paths["tflite"].is_file() and parity["passed"] is False and "max |Δprobability|" in parity["failures"][0]


def test_cli_names_the_flag_that_keeps_a_failed_artifact(tmp_path, capsys, monkeypatch):
    from nin_keras.export import exporter

    # The real check, with a bound nothing meets.
    real_report = exporter.parity_report
    monkeypatch.setattr(exporter, "parity_report", lambda *args, **kwargs: real_report(
        *args, **{**kwargs, "tolerance": ParityTolerance(float32_atol=-1.0)}))
    keras.utils.set_random_seed(0)
    preset = save_preset(create_model("nin_mnist"), tmp_path / "preset", {"dataset": "mnist"},
                                 [keras.layers.Rescaling(1 / 255)])
    argv = ["export", str(preset), "--formats", "tflite", "--out", str(tmp_path / "out"), "--parity-samples", "4"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "tflite artifact failed the parity check (float32): max |Δprobability|" in err
    assert "(pass --accept-parity-failure to keep it anyway" in err and "accept_parity_failure=" not in err
    assert not (tmp_path / "out").exists()
    assert cli.main([*argv, "--accept-parity-failure"]) == 0
    assert "PARITY FAILED, kept: max |Δprobability|" in capsys.readouterr().out
    assert (tmp_path / "out" / "preset.tflite").is_file()


def test_the_readme_figures_of_the_compact_whitening_kernel_are_the_published_kernels():
    """README: "the 147 taps of each output channel sum to 0.06 against a centre tap of 2.46": the
    reason the whitening stays float in int8 files, read off ``nin_cifar10.caffe_compact``."""
    import re

    from nin_keras.zoo import ImageClassifier

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    stated = re.search(r"the (\d+) taps of each output channel sum to ([\d.]+)\s+against a centre tap of ([\d.]+)", readme)
    assert stated
    whitening = next(layer for layer in ImageClassifier.from_preset("nin_cifar10.caffe_compact").preprocessing
                     if type(layer).__name__ == "ConvWhitening")
    kernel = whitening.get_weights()[0]  # (k, k, in, out)
    size, _, _, channels = kernel.shape
    assert int(stated[1]) == size * size * kernel.shape[2]
    sums = kernel.reshape(-1, channels).sum(axis=0)
    centres = np.array([kernel[size // 2, size // 2, c, c] for c in range(channels)])
    assert np.all(np.round(sums, 2) == float(stated[2])), sums
    assert np.round(centres.min(), 2) == float(stated[3]), centres


def test_float16_grid_kernel_keeps_the_whitening_output():
    """Against NumPy: every value is a float16 number, and the output error on the data is far
    below rounding each tap to the nearest float16 (what the TFLite converter does)."""
    from nin_keras.export.whitening_int8 import float16_grid_kernel
    from nin_keras.layers import ConvWhitening
    from nin_keras.layers.conv_whitening import patches

    rng = np.random.default_rng(0)
    images = np.cumsum(np.cumsum(rng.normal(size=(300, 12, 12, 3)), 1), 2)  # smooth, like photos
    images /= images.std()
    layer = ConvWhitening(kernel_size=5, filter_bias=1e-3).adapt(images)
    kernel, bias = (keras.ops.convert_to_numpy(w).astype(np.float64) for w in (layer.kernel, layer.bias))
    new_kernel, new_bias = float16_grid_kernel(kernel, bias, images, "symmetric")
    for values in (new_kernel, new_bias):
        np.testing.assert_array_equal(values.astype(np.float16).astype(np.float32), values)
    rows = patches(images, 5, "symmetric")
    flat = kernel.reshape(-1, 3)
    exact = rows @ flat + bias
    nearest = rows @ flat.astype(np.float16).astype(np.float64) + bias.astype(np.float16)
    chosen = rows @ new_kernel.reshape(-1, 3).astype(np.float64) + new_bias
    error = lambda out: np.mean((out - exact) ** 2)  # noqa: E731
    assert error(chosen) < 0.25 * error(nearest), (error(chosen), error(nearest))


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["nin_cifar10.caffe_compact", "nin_cifar10.modern_compact"])
def test_float16_export_of_the_compact_presets_passes_its_parity_check(preset, tmp_path, capsys):
    # Before: max |Δp| 0.020 and 0.013 > 0.01 (the whitening kernel rounded to nearest float16),
    # and with the default formats "implemented for tflite only".
    assert cli.main(["export", preset, "--quantize", "float16", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "note: --quantize float16 does not apply to savedmodel, onnx: written in float32" in out
    info = json.loads(metadata_path(tmp_path / f"{preset}.float16.tflite").read_text())
    assert info["parity"]["passed"] and info["parity"]["max_abs_diff"] < 0.005 and info["parity"]["count"] == 500
    assert info["quantization"]["whitening_weights"]["layers"] == ["conv_whitening"]
    for fmt in ("savedmodel", "onnx"):
        assert json.loads(metadata_path(tmp_path / f"{preset}.{fmt}").read_text())["quantization"]["mode"] is None


# --------------------------------------------------------------------------- CLI


def test_cli_export_then_predict_matches_keras(tmp_path, capsys):
    from PIL import Image

    keras.utils.set_random_seed(0)
    network = create_model("nin_mnist")
    preset = save_preset(network, tmp_path / "preset", {"dataset": "mnist"},
                                 [keras.layers.Rescaling(1 / 255)])
    out = tmp_path / "out"
    assert cli.main(["export", str(preset), "--formats", "tflite,onnx", "--out", str(out),
                     "--parity-samples", "16"]) == 0
    printed = capsys.readouterr().out
    assert "tflite" in printed and "onnx" in printed and "top-1 agreement 1.0000" in printed
    images, _ = real_images("mnist", 3, (28, 28, 1))
    files = [tmp_path / f"{i}.png" for i in range(3)]
    for file, image in zip(files, images):
        Image.fromarray(image[..., 0]).save(file)
    expected = keras_probabilities(zoo.load_preset(preset).inference_model("float32"),
                                   images).argmax(1)
    for artifact in sorted(out.glob("*.onnx")) + sorted(out.glob("*.tflite")):
        assert cli.main(["predict", str(artifact), *map(str, files), "--top-k", "2", "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert [r["top_k"][0]["label"] for r in result["predictions"]] == [str(c) for c in expected]
    assert cli.main(["predict", str(artifact), str(tmp_path / "nope.png")]) == 1
    assert "nope.png" in capsys.readouterr().err


def test_cli_export_prints_a_line_per_artifact_as_it_goes(tmp_path, capsys, monkeypatch):
    from nin_keras.export import exporter

    keras.utils.set_random_seed(0)
    preset = save_preset(create_model("nin_mnist"), tmp_path / "preset", {"dataset": "mnist"},
                                 [keras.layers.Rescaling(1 / 255)])
    out = tmp_path / "out"
    seen = []  # what was printed and which artifacts existed when each artifact was finished
    real_export = exporter.export

    @functools.wraps(real_export)  # the CLI reads export's parameters and defaults from its signature
    def watched(*args, progress, **kwargs):
        def step(fmt, path):
            progress(fmt, path)
            seen.append((capsys.readouterr().out, sorted(p.name for p in out.iterdir())))
        return real_export(*args, progress=step, **kwargs)

    monkeypatch.setattr(exporter, "export", watched)
    monkeypatch.setattr("nin_keras.export.export", watched)
    assert cli.main(["export", str(preset), "--formats", "tflite,onnx", "--out", str(out),
                     "--parity-samples", "8"]) == 0
    (tflite_line, files_then), (onnx_line, files_at_end) = seen
    # The TFLite line came while the ONNX file was not written yet, and names its size and parity.
    assert files_then == ["preset.tflite", "preset.tflite.json"]
    assert tflite_line.startswith("exporting ") and "on 8 test images" in tflite_line
    assert f"tflite     {out / 'preset.tflite'}  " in tflite_line and " MB  float32  max|Δ| " in tflite_line
    assert "top-1 agreement 1.0000" in tflite_line and "on 8 images" in tflite_line
    assert onnx_line.startswith(f"onnx       {out / 'preset.onnx'}  ") and len(onnx_line.splitlines()) == 1
    assert "preset.onnx" in files_at_end


# --------------------------------------------------------------------------- pretrained, full size (slow)


@pytest.mark.slow
@pytest.mark.parametrize("quantize", [None, "int8"])
def test_pretrained_nin_cifar10_with_preprocessing_baked_in(quantize, tmp_path):
    """The acceptance path: raw CIFAR-10 (JPEG copy) pixels in, all formats, fresh process."""
    preset = pretrained_preset("nin_cifar10")
    inference = preset.inference_model(input_dtype="float32")
    formats = FORMATS if quantize is None else ("tflite", "onnx")
    paths = export("nin_cifar10", formats, tmp_path, quantize=quantize)
    images, labels = real_images("cifar10", 200, (32, 32, 3))
    reference = keras_probabilities(inference, images)
    outputs = run_fresh([(paths[f], images) for f in formats], tmp_path)
    for fmt, out in zip(formats, outputs):
        info = json.loads(metadata_path(paths[fmt]).read_text())
        assert info["source"]["preset"] == "nin_cifar10" and info["class_names"][3] == "cat"
        if quantize is None:
            assert np.abs(out - reference).max() <= 1e-4
            np.testing.assert_array_equal(out.argmax(1), reference.argmax(1))
        else:
            assert np.mean(out.argmax(1) == reference.argmax(1)) >= 0.95
            assert info["parity"]["accuracy_drop"] <= ParityTolerance().max_accuracy_drop


# --------------------------------------------------------------------------- compact whitening in int8


def whitened_model() -> keras.Model:
    """GCN + a fitted 3x3 ConvWhitening + a small network, 8x8x3 raw pixels in."""
    from nin_keras.layers import ConvWhitening, GlobalContrastNormalization

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    # Smooth images (cumulative sums of noise) have the correlated pixels a whitening undoes.
    images = np.cumsum(np.cumsum(rng.normal(size=(200, 8, 8, 3)), 1), 2)
    gcn = GlobalContrastNormalization(scale=55.0, name="global_contrast_normalization")
    whitening = ConvWhitening(kernel_size=3, name="conv_whitening").adapt(np.asarray(gcn(images)))
    network = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(6, 3, activation="relu"),
                                keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(4, activation="softmax")],
                               name="network")
    return presets.inference_model(network, [gcn, whitening], input_dtype="float32", name="whitened")


def test_int8_onnx_keeps_the_fused_whitening_convolution_float(tmp_path):
    """tf2onnx fuses ConvWhitening's convolution and bias into a node named ``Conv__<n>`` (no layer
    in its name); int8 must still leave it float while the network's convolution is quantized."""
    import onnx

    from nin_keras.export.onnx import float_nodes

    images = np.random.default_rng(1).integers(0, 256, (32, 8, 8, 3), np.uint8)
    paths = export(whitened_model(), ("onnx",), tmp_path, quantize="int8", representative_data=images,
                   parity_data=(images, None), tolerance=ParityTolerance(min_top1_agreement=0.5))
    graph = onnx.load(paths["onnx"]).graph
    produced_by = {out: node for node in graph.node for out in node.output}
    initializers = {init.name: init for init in graph.initializer}
    weights = {}  # output channels of each convolution -> op type feeding its weight
    for node in (n for n in graph.node if n.op_type == "Conv"):
        weight = node.input[1]
        source = produced_by.get(weight)
        shape = initializers[weight].dims if source is None else initializers[source.input[0]].dims
        weights[shape[0]] = "float" if source is None else source.op_type
    assert weights == {3: "float", 6: "DequantizeLinear"}, weights
    fused = [n for n in float_nodes(graph, ["global_contrast_normalization", "conv_whitening"]) if "/" not in n]
    assert any(n.startswith("Conv__") for n in fused), fused
    assert json.loads(metadata_path(paths["onnx"]).read_text())["parity"]["passed"]


@pytest.mark.parametrize("quantize", [None, "int8"])
def test_onnx_of_a_per_channel_standardized_model_takes_the_images_alone(tmp_path, quantize):
    """Keras's ``Normalization`` keeps its fitted mean and variance as tensors, not variables, so a
    traced serving function captures them and tf2onnx made them graph inputs (the default
    ``nin_cifar10`` failed to export). The ONNX model must take the images alone and compute
    ``(x - mean) / std`` with the fitted statistics (checked against NumPy and the Keras model)."""
    import onnx

    from nin_keras.export.runtime import load_onnx

    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (40, 8, 8, 3), np.uint8)
    norm = keras.layers.Normalization(axis=-1, name="normalization")
    norm.adapt(images.astype(np.float32))
    keras.utils.set_random_seed(0)
    network = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(6, 3, activation="relu"),
                                keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(4, activation="softmax")],
                               name="network")
    model = presets.inference_model(network, [norm], input_dtype="float32", name="standardized")
    paths = export(model, ("onnx",), tmp_path, quantize=quantize, representative_data=images,
                   parity_data=(images, None), tolerance=ParityTolerance(min_top1_agreement=0.8))
    assert [value.name for value in onnx.load(paths["onnx"]).graph.input] == ["images"]
    assert json.loads(metadata_path(paths["onnx"]).read_text())["parity"]["passed"]
    if quantize is None:
        pixels = images.astype(np.float64)
        standardized = (pixels - pixels.mean(axis=(0, 1, 2))) / pixels.std(axis=(0, 1, 2))
        expected = keras.ops.convert_to_numpy(network(standardized.astype(np.float32)))
        np.testing.assert_allclose(load_onnx(paths["onnx"])(images.astype(np.float32)), expected, atol=1e-5)


@pytest.mark.slow
def test_compact_cifar10_int8_artifacts_on_the_whole_test_split(tmp_path):
    """nin_cifar10.caffe_compact: int8 ONNX (whitening float) and integer-only TFLite (whitening on
    the int8 grid) on all 10,000 CIFAR-10 (JPEG copy) test images, against the Keras model."""
    from nin_keras.data.arrays import load_arrays
    from nin_keras.export.runtime import load_onnx, load_tflite

    preset = pretrained_preset("nin_cifar10.caffe_compact")
    x_test, y_test = load_arrays({"name": "cifar10"}, "test")
    x_test = x_test.astype(np.float32)
    reference = keras.ops.convert_to_numpy(preset.inference_model(input_dtype="float32").predict(
        x_test, batch_size=500, verbose=0)).argmax(1)
    onnx_path = export("nin_cifar10.caffe_compact", ("onnx",), tmp_path, quantize="int8")["onnx"]
    tflite_path = export("nin_cifar10.caffe_compact", ("tflite",), tmp_path, quantize="int8",
                         integer_io=True)["tflite"]
    onnx_top1 = load_onnx(onnx_path)(x_test).argmax(1)
    tflite_top1 = load_tflite(tflite_path)(x_test).argmax(1)
    assert np.mean(onnx_top1 == reference) >= 0.99
    assert np.mean(tflite_top1 == reference) >= 0.96
    # The bar: within 0.5 points of the float dense-ZCA model (80.53%).
    assert 100 * np.mean(tflite_top1 == y_test) >= 80.53 - 0.5
    assert tflite_path.stat().st_size <= 1.5e6
