"""Tests of nin_keras.caffe: the .caffemodel reader, the converter and the import-caffe command.

The real file is the authors' NIN CIFAR-10 model in ../shared/weights (see PROVENANCE.md there);
tests that need it skip when it is absent. Small files in both Caffe formats are written here by
an independent protobuf encoder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import hashlib
import signal
import struct
from pathlib import Path

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nin_keras.caffe.convert import NIN_LAYER_MAPPING, caffe_to_keras_weights, load_caffe_weights
from nin_keras.caffe.reader import CaffeModel, parse_caffemodel, read_caffemodel
from nin_keras.errors import CaffeFormatError, WeightsMismatchError
from nin_keras.models import nin_cifar10, nin_cifar100, nin_mnist

from conftest import SHARED_DIR as SHARED  # noqa: E402

CAFFEMODEL = SHARED / "weights" / "cifar10_nin.caffemodel"
needs_caffemodel = pytest.mark.skipif(not CAFFEMODEL.exists(), reason=f"{CAFFEMODEL} not present")

# From ../shared/weights/PROVENANCE.md.
SHA256 = "d131ace82eeecbc14bfba817a99eaaef3ecf4fbfeac1d5da2bc2c3ef4d1fb3da"
WEIGHT_SHAPES = {
    "conv1": (192, 3, 5, 5),
    "cccp1": (160, 192, 1, 1),
    "cccp2": (96, 160, 1, 1),
    "conv2": (192, 96, 5, 5),
    "cccp3": (192, 192, 1, 1),
    "cccp4": (192, 192, 1, 1),
    "conv3": (192, 192, 3, 3),
    "cccp5": (192, 192, 1, 1),
    "cccp6": (10, 192, 1, 1),
}


# --- an independent protobuf encoder -----------------------------------------------------------


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int32/int64 values are sign-extended to 10 bytes
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def key(field: int, wire: int) -> bytes:
    return varint(field << 3 | wire)


def ld(field: int, payload: bytes) -> bytes:
    return key(field, 2) + varint(len(payload)) + payload


def vint(field: int, n: int) -> bytes:
    return key(field, 0) + varint(n)


def blob_new(array: np.ndarray, packed: bool = True, double: bool = False) -> bytes:
    """A BlobProto with a BlobShape (field 7) and float (5) or double (8) data."""
    if packed:
        shape = ld(7, ld(1, b"".join(varint(d) for d in array.shape)))
    else:
        shape = ld(7, b"".join(vint(1, d) for d in array.shape))
    fmt, field, wire = ("<d", 8, 1) if double else ("<f", 5, 5)
    if packed:
        data = ld(field, array.astype(fmt).tobytes())
    else:
        data = b"".join(key(field, wire) + struct.pack(fmt, v) for v in array.ravel().tolist())
    return shape + data


def blob_legacy(array: np.ndarray) -> bytes:
    """A BlobProto with the old num/channels/height/width fields, shape padded to 4-d with 1s."""
    dims = (1,) * (4 - array.ndim) + array.shape
    return b"".join(vint(f, d) for f, d in zip((1, 2, 3, 4), dims)) + ld(5, array.astype("<f4").tobytes())


# Field numbers of caffe.proto's ConvolutionParameter and PoolingParameter.
CONV_PARAM_FIELDS = {"num_output": 1, "pad": 3, "kernel_size": 4, "group": 5, "stride": 6, "kernel_h": 11, "kernel_w": 12}
POOL_PARAM_FIELDS = {"pool": 1, "kernel_size": 2, "stride": 3, "pad": 4}


def layer_new(name: str, type_: str, blobs: list[bytes], bottom=(), top=(), params=None) -> bytes:
    """A LayerParameter; ``params`` (name -> values) goes to convolution_param or pooling_param."""
    param_bytes = b""
    if params:
        fields, number = (POOL_PARAM_FIELDS, 121) if type_ == "Pooling" else (CONV_PARAM_FIELDS, 106)
        param_bytes = ld(number, b"".join(vint(fields[k], v) for k, values in params.items() for v in values))
    return (
        ld(1, name.encode())
        + ld(2, type_.encode())
        + b"".join(ld(3, b.encode()) for b in bottom)
        + b"".join(ld(4, t.encode()) for t in top)
        + b"".join(ld(7, b) for b in blobs)
        + param_bytes
    )


def layer_v1(name: str, type_enum: int, blobs: list[bytes]) -> bytes:
    return ld(4, name.encode()) + vint(5, type_enum) + b"".join(ld(6, b) for b in blobs)


def net(layers: list[bytes], v1: bool, name: str = "net") -> bytes:
    return ld(1, name.encode()) + b"".join(ld(2 if v1 else 100, layer) for layer in layers)


def small_model_bytes(v1: bool) -> bytes:
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(4, 3, 3, 3)).astype(np.float32), rng.normal(size=4).astype(np.float32)
    if v1:
        layers = [layer_v1("data", 5, []), layer_v1("conv1", 4, [blob_legacy(w), blob_legacy(b)]), layer_v1("relu1", 18, [])]
    else:
        layers = [layer_new("data", "Input", []), layer_new("conv1", "Convolution", [blob_new(w), blob_new(b)]), layer_new("relu1", "ReLU", [])]
    return net(layers, v1)


@contextlib.contextmanager
def time_limit(seconds: float):
    """Turn a hang into a test failure (SIGALRM; the tests run on Linux/macOS)."""

    def on_alarm(signum, frame):
        raise TimeoutError(f"parser ran longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# --- the reader --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_bytes() -> bytes:
    if not CAFFEMODEL.exists():
        pytest.skip(f"{CAFFEMODEL} not present")
    return CAFFEMODEL.read_bytes()


@pytest.fixture(scope="module")
def real_model(real_bytes) -> CaffeModel:
    return parse_caffemodel(real_bytes, str(CAFFEMODEL))


def test_real_file_matches_provenance(real_bytes, real_model):
    assert hashlib.sha256(real_bytes).hexdigest() == SHA256
    assert real_model.format == "V1LayerParameter"
    assert real_model.name == "CIFAR10_full"
    with_blobs = [layer for layer in real_model.layers if layer.blobs]
    assert [layer.name for layer in with_blobs] == list(WEIGHT_SHAPES)
    for layer in with_blobs:
        assert layer.type == "Convolution"
        weights, bias = layer.blobs
        assert weights.shape == WEIGHT_SHAPES[layer.name]
        assert bias.shape == (1, 1, 1, WEIGHT_SHAPES[layer.name][0])
        assert weights.dtype == np.float32 and np.isfinite(weights).all()
    assert real_model.count_params == 966_986
    pools = [layer.name for layer in real_model.layers if layer.type == "Pooling"]
    assert pools == ["pool1", "pool2", "pool3"]
    assert real_model.layer("cccp1").bottom == ("conv1",)
    assert real_model.layer("loss").type == "SoftmaxWithLoss"
    with pytest.raises(KeyError, match="conv9"):
        real_model.layer("conv9")


def test_conv1_values_are_the_files_floats(real_bytes, real_model):
    # The first conv1 weights sit right after the packed-data header; decode them independently.
    start = real_bytes.index(b"conv1\"\x05conv1")  # name, then its top
    blob_data = real_bytes.index(b"*", start) + 1  # field 5, wire type 2
    length, pos = 0, blob_data
    for shift in range(0, 35, 7):
        byte = real_bytes[pos]
        length |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            break
    assert length == 192 * 3 * 5 * 5 * 4
    first = np.frombuffer(real_bytes[pos : pos + 40], "<f4")
    np.testing.assert_array_equal(real_model.layer("conv1").blobs[0].ravel()[:10], first)


@pytest.mark.parametrize("packed", [True, False])
@pytest.mark.parametrize("double", [True, False])
def test_new_format_blob_encodings(packed, double):
    rng = np.random.default_rng(1)
    w = rng.normal(size=(2, 3, 2, 2)).astype(np.float32)
    b = rng.normal(size=(2,)).astype(np.float32)
    data = net(
        [layer_new("x", "Input", [], top=["x"]), layer_new("c", "Convolution", [blob_new(w, packed, double), blob_new(b, packed, double)], ["x"], ["c"])],
        v1=False,
        name="tiny",
    )
    model = parse_caffemodel(data)
    assert model.format == "LayerParameter" and model.name == "tiny"
    assert [(l.name, l.type, l.bottom, l.top) for l in model.layers] == [("x", "Input", (), ("x",)), ("c", "Convolution", ("x",), ("c",))]
    got_w, got_b = model.layer("c").blobs
    assert got_w.dtype == np.float32 and got_w.shape == w.shape
    np.testing.assert_array_equal(got_w, w)
    np.testing.assert_array_equal(got_b, b)


def test_v1_format_and_type_names():
    model = parse_caffemodel(small_model_bytes(v1=True))
    assert model.format == "V1LayerParameter"
    assert [(l.name, l.type) for l in model.layers] == [("data", "Data"), ("conv1", "Convolution"), ("relu1", "ReLU")]
    assert model.layer("conv1").blobs[1].shape == (1, 1, 1, 4)
    assert model.count_params == 4 * 3 * 3 * 3 + 4
    unknown = parse_caffemodel(net([layer_v1("odd", 999, [])], v1=True))
    assert unknown.layers[0].type == "V1Type999"


def test_unknown_fields_are_skipped():
    extra = vint(5, 1) + key(6, 1) + b"\0" * 8 + key(7, 5) + b"\0" * 4 + ld(8, b"ignored")
    data = extra + small_model_bytes(v1=False)
    assert parse_caffemodel(data).count_params == 4 * 3 * 3 * 3 + 4


BAD_FILES = {
    "empty": (b"", "empty"),
    "text": (b"name: 'prototxt, not a caffemodel'\n", "not a valid"),
    "png": (b"\x89PNG\r\n\x1a\n" + b"\0" * 24, "not a valid"),
    "no layers": (ld(1, b"just a name"), "no layers"),
    "field zero": (key(0, 0) + b"\x01", "field number 0"),
    "bad wire type": (key(2, 7) + b"\x01", "invalid wire type 7"),
    "group": (key(2, 3) + key(2, 4), "group"),
    "long varint": (key(1, 0) + b"\xff" * 11, "varint longer"),
    "truncated varint": (key(1, 0) + b"\xff", "truncated varint"),
    "length past end": (key(100, 2) + varint(50) + b"\0" * 3, "50 bytes declared"),
    "name not utf-8": (ld(100, ld(1, b"\xff\xfe")), "not UTF-8"),
    "wrong wire for layer": (vint(100, 3), "expected"),
    "mixed formats": (ld(2, layer_v1("a", 4, [])) + ld(100, layer_new("b", "ReLU", [])), "mixes"),
    "size mismatch": (net([layer_new("c", "Convolution", [ld(7, ld(1, varint(2) + varint(3))) + ld(5, b"\0" * 20)])], False), "holds 5 values but its shape (2, 3) needs 6"),
    "legacy size mismatch": (net([layer_v1("c", 4, [vint(1, 2) + vint(2, 2) + vint(3, 1) + vint(4, 1) + ld(5, b"\0" * 4)])], True), "holds 1 values"),
    "negative dim": (net([layer_new("c", "X", [ld(7, ld(1, varint(-2))) ])], False), "negative"),
    "too many axes": (net([layer_new("c", "X", [ld(7, ld(1, varint(1) * 40)) + ld(5, b"\0" * 4)])], False), "40 axes"),
    "ragged packed floats": (net([layer_new("c", "X", [ld(5, b"\0" * 5)])], False), "not a multiple of 4"),
    "float and double": (net([layer_new("c", "X", [ld(7, ld(1, varint(1))) + ld(5, b"\0" * 4) + ld(8, b"\0" * 8)])], False), "both"),
    # Issue 17: these passed the reader, then import-caffe died with IndexError or kept NaN weights.
    "empty packed pool": (net([layer_new("p", "Pooling", []) + ld(121, ld(1, b""))], False), "pooling_param pool is an empty packed field"),
    "empty packed stride": (net([layer_new("p", "Pooling", []) + ld(121, ld(3, b""))], False), "pooling_param stride is an empty packed field"),
    "empty packed group": (net([layer_new("c", "Convolution", []) + ld(106, ld(5, b""))], False), "convolution_param group is an empty packed field"),
    "empty packed kernel_size": (net([layer_new("c", "Convolution", []) + ld(106, ld(4, b""))], False), "convolution_param kernel_size is an empty packed field"),
    "NaN weights": (net([layer_new("c", "Convolution", [blob_new(np.array([1.0, np.nan, 2.0]))])], False), "(c) blob 0 holds 1 NaN or infinite values"),
    "infinite double weights": (net([layer_new("c", "Convolution", [blob_new(np.array([np.inf, -np.inf]), double=True)])], False), "holds 2 NaN or infinite values"),
    "double beyond float32": (net([layer_new("c", "Convolution", [blob_new(np.array([1e300]), double=True)])], False), "holds 1 NaN or infinite values"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_malformed_files_raise_caffe_format_error(case, tmp_path):
    data, message = BAD_FILES[case]
    path = tmp_path / "bad.caffemodel"
    path.write_bytes(data)
    with pytest.raises(CaffeFormatError, match=re.escape(message)) as info:
        read_caffemodel(path)
    assert str(path) in str(info.value)


def test_truncated_real_file(real_bytes):
    for cut in (1, 10, 100, 5_000, len(real_bytes) // 2, len(real_bytes) - 1):
        with pytest.raises(CaffeFormatError, match="truncated"):
            parse_caffemodel(real_bytes[:cut], "cut")


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_caffemodel(tmp_path / "absent.caffemodel")


def _parse_or_format_error(data: bytes) -> None:
    with time_limit(10):
        try:
            parse_caffemodel(data, "fuzz")
        except CaffeFormatError:
            pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=256))
def test_fuzz_random_bytes(data):
    _parse_or_format_error(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([True, False]), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6), st.integers(0, 10_000))
def test_fuzz_mutated_small_models(v1, edits, cut):
    data = bytearray(small_model_bytes(v1))
    for position, value in edits:
        data[position % len(data)] = value
    _parse_or_format_error(bytes(data[: max(1, cut % (len(data) + 1))]))


def test_fuzz_mutated_real_file(real_bytes, real_model):
    rng = np.random.default_rng(2024)
    # Most of the file is float payload; aim most edits at the keys and lengths around each
    # layer's name, and the rest anywhere.
    anchors = [real_bytes.index(layer.name.encode()) for layer in real_model.layers]
    for _ in range(150):
        data = bytearray(real_bytes)
        for _ in range(rng.integers(1, 9)):
            if rng.random() < 0.7:
                position = min(max(0, anchors[rng.integers(len(anchors))] + rng.integers(-24, 40)), len(data) - 1)
            else:
                position = rng.integers(0, len(data))
            data[position] = rng.integers(0, 256)
        if rng.random() < 0.3:
            data = data[: rng.integers(1, len(data))]
        _parse_or_format_error(bytes(data))


# --- the converter -----------------------------------------------------------------------------


def np_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, pad: int) -> np.ndarray:
    """Caffe convolution, NCHW, stride 1: sum over kernel offsets of shifted-input products."""
    _, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = xp.shape[2] - kh + 1, xp.shape[3] - kw + 1
    out = np.zeros((x.shape[0], w.shape[0], oh, ow))
    for dy in range(kh):
        for dx in range(kw):
            out += np.einsum("nchw,oc->nohw", xp[:, :, dy : dy + oh, dx : dx + ow], w[:, :, dy, dx])
    return out + b.reshape(1, -1, 1, 1)


def np_pool(x: np.ndarray, k: int, s: int, mode: str) -> np.ndarray:
    """Caffe pooling without padding: ceil-rounded output, windows clipped to the image."""
    h, w = x.shape[2:]
    oh, ow = -(-(h - k) // s) + 1, -(-(w - k) // s) + 1
    out = np.empty(x.shape[:2] + (oh, ow))
    for i in range(oh):
        for j in range(ow):
            window = x[:, :, i * s : min(i * s + k, h), j * s : min(j * s + k, w)]
            out[:, :, i, j] = window.max(axis=(2, 3)) if mode == "max" else window.mean(axis=(2, 3))
    return out


def np_caffe_nin(model: CaffeModel, images_nhwc: np.ndarray) -> np.ndarray:
    """The cifar10_nin train_val network (PROVENANCE.md) in float64 NumPy; returns the pooled maps."""
    relu = lambda t: np.maximum(t, 0)  # noqa: E731
    x = images_nhwc.transpose(0, 3, 1, 2).astype(np.float64)
    pads = {"conv1": 2, "conv2": 2, "conv3": 1}
    pools = {"cccp2": (3, 2, "max"), "cccp4": (3, 2, "average"), "cccp6": (8, 1, "average")}
    for name in WEIGHT_SHAPES:
        w, b = model.layer(name).blobs
        x = relu(np_conv(x, w.astype(np.float64), b.ravel().astype(np.float64), pads.get(name, 0)))
        if name in pools:
            x = np_pool(x, *pools[name])
    return x.reshape(x.shape[0], -1)


@pytest.fixture(scope="module")
def imported(real_model) -> keras.Model:
    return load_caffe_weights(nin_cifar10(classifier_activation=None), real_model)


def test_import_matches_numpy_caffe_forward(real_model, imported):
    rng = np.random.default_rng(7)
    images = rng.normal(scale=2.0, size=(3, 32, 32, 3)).astype(np.float32)
    reference = np_caffe_nin(real_model, images)
    logits = keras.ops.convert_to_numpy(imported(images, training=False))
    assert np.abs(reference).max() > 1  # not a degenerate all-zero comparison
    np.testing.assert_allclose(logits, reference, rtol=1e-4, atol=1e-4)
    probabilities = np.exp(reference - reference.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    softmax_model = nin_cifar10()
    softmax_model.set_weights(imported.get_weights())
    np.testing.assert_allclose(softmax_model.predict(images, verbose=0), probabilities, atol=1e-4)


def test_new_layer_format_imports_like_v1(real_model, imported):
    layers = []
    for layer in real_model.layers:
        blobs = [blob_new(layer.blobs[0]), blob_new(layer.blobs[1].ravel())] if layer.blobs else []
        layers.append(layer_new(layer.name, layer.type, blobs, layer.bottom, layer.top, layer.params))
    new_format = parse_caffemodel(net(layers, v1=False), "re-encoded")
    assert new_format.format == "LayerParameter"
    assert new_format.layer("cccp6").blobs[1].shape == (10,)
    assert new_format.layer("pool2").params == {"pool": (1,), "kernel_size": (3,), "stride": (2,)}
    model = load_caffe_weights(nin_cifar10(classifier_activation=None), new_format)
    for got, want in zip(model.get_weights(), imported.get_weights()):
        np.testing.assert_array_equal(got, want)


def test_layout_is_transposed_not_reshaped(real_model, imported):
    caffe_w = real_model.layer("conv2").blobs[0]  # (out, in, kh, kw)
    keras_w = keras.ops.convert_to_numpy(imported.get_layer("mlpconv2").kernels[0])  # (kh, kw, in, out)
    assert keras_w[4, 1, 7, 11] == caffe_w[11, 7, 4, 1]
    bias = keras.ops.convert_to_numpy(imported.get_layer("mlpconv3").biases[2])
    np.testing.assert_array_equal(bias, real_model.layer("cccp6").blobs[1].ravel())


def _without(model: CaffeModel, name: str) -> CaffeModel:
    return dataclasses.replace(model, layers=tuple(l for l in model.layers if l.name != name))


@pytest.mark.parametrize(
    "build, edit, message",
    [
        (nin_mnist, None, "Caffe layer 'conv1' -> mlpconv1 convolution 0: blob 0 (weights) has shape (192, 3, 5, 5), the Keras kernel (5, 5, 1, 64) needs Caffe shape (64, 1, 5, 5)"),
        (nin_cifar100, None, "Caffe layer 'cccp6' -> mlpconv3 convolution 2: blob 0 (weights) has shape (10, 192, 1, 1), the Keras kernel (1, 1, 192, 100) needs Caffe shape (100, 192, 1, 1)"),
        (lambda: nin_cifar10(batch_norm=True), None, "uses batch normalization"),
        (lambda: nin_cifar10(include_top=False), None, "maps to Keras layer 'mlpconv3', which model"),
        (nin_cifar10, lambda m: _without(m, "cccp4"), "Caffe layers ['cccp4'] are missing"),
        (nin_cifar10, lambda m: dataclasses.replace(m, layers=m.layers + (dataclasses.replace(m.layer("cccp6"), name="fc7"),)), "Caffe layer 'fc7' (Convolution) has weights but no Keras counterpart"),
        (nin_cifar10, lambda m: dataclasses.replace(m, layers=tuple(dataclasses.replace(l, blobs=l.blobs[:1]) if l.name == "cccp2" else l for l in m.layers)), "'cccp2' -> mlpconv1 convolution 2: expected 2 blobs"),
        (nin_cifar10, lambda m: dataclasses.replace(m, layers=tuple(dataclasses.replace(l, blobs=(l.blobs[0], l.blobs[1][..., :5])) if l.name == "cccp5" else l for l in m.layers)), "blob 1 (bias) has shape (1, 1, 1, 5), the Keras bias needs (192,)"),
    ],
)
def test_mismatched_architecture_is_reported_and_assigns_nothing(real_model, build, edit, message):
    model = build()
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(WeightsMismatchError, match=re.escape(message)):
        load_caffe_weights(model, edit(real_model) if edit else real_model)
    for got, want in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, want)


def _with_params(model: CaffeModel, name: str, **params) -> CaffeModel:
    def edit(layer):
        return dataclasses.replace(layer, params={**layer.params, **params}) if layer.name == name else layer

    return dataclasses.replace(model, layers=tuple(edit(l) for l in model.layers))


def test_real_file_layer_parameters(real_model):
    assert real_model.layer("conv1").params == {"num_output": (192,), "pad": (2,), "kernel_size": (5,)}
    assert real_model.layer("conv3").params["pad"] == (1,)
    assert real_model.layer("pool1").params == {"pool": (0,), "kernel_size": (3,), "stride": (2,)}
    assert real_model.layer("pool3").params == {"pool": (1,), "kernel_size": (8,), "stride": (1,)}
    assert real_model.layer("relu1").params == {}


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: _with_params(m, "conv2", pad=(0,)), "Caffe layer 'conv2' -> mlpconv2 convolution 0: Caffe pad (0, 0), the Keras convolution needs (2, 2)"),
        (lambda m: _with_params(m, "conv3", pad_h=(1,), pad_w=(0,)), "'conv3' -> mlpconv3 convolution 0: Caffe pad (1, 0)"),
        (lambda m: _with_params(m, "cccp3", stride=(2,)), "'cccp3' -> mlpconv2 convolution 1: Caffe stride (2, 2), the Keras convolution needs (1, 1)"),
        (lambda m: _with_params(m, "cccp1", group=(2,)), "'cccp1' -> mlpconv1 convolution 1: Caffe group 2"),
        (lambda m: _with_params(m, "pool1", pool=(1,)), "Caffe layer 'pool1' -> pool1: Caffe pool average, the Keras layer has max"),
        (lambda m: _with_params(m, "pool2", kernel_size=(2,)), "'pool2' -> pool2: Caffe kernel_size (2, 2), the Keras layer has (3, 3)"),
        (lambda m: _with_params(m, "pool3", pool=(0,)), "'pool3' -> head: Caffe max pooling, the head averages"),
        (lambda m: _with_params(m, "pool3", kernel_size=(4,)), "'pool3' -> head: Caffe window (4, 4) does not cover the (8, 8) maps"),
        (lambda m: _without(m, "pool2"), "the Caffe model has 2 Pooling layers ['pool1', 'pool3']"),
        (lambda m: _without(m, "relu_cccp6"), "'cccp6' -> mlpconv3 convolution 2: Caffe has no ReLU after it, the Keras convolution does"),
    ],
)
def test_convolution_and_pooling_parameters_are_checked(real_model, edit, message):
    with pytest.raises(WeightsMismatchError, match=re.escape(message)):
        caffe_to_keras_weights(nin_cifar10(), edit(real_model))


def test_custom_mapping_and_uncovered_convolutions(real_model):
    # A mapping that leaves mlpconv3's last convolution without weights must be refused.
    partial = {k: v for k, v in NIN_LAYER_MAPPING.items() if k != "cccp6"}
    with pytest.raises(WeightsMismatchError, match="'cccp6' .* has weights but no Keras counterpart"):
        caffe_to_keras_weights(nin_cifar10(), real_model, partial)
    with pytest.raises(WeightsMismatchError, match=re.escape("Keras layer 'mlpconv3' convolutions [2] get no Caffe weights")):
        caffe_to_keras_weights(nin_cifar10(), _without(real_model, "cccp6"), partial)
    with pytest.raises(WeightsMismatchError, match="mlpconv3 has only 3 convolutions"):
        caffe_to_keras_weights(nin_cifar10(), real_model, {**NIN_LAYER_MAPPING, "cccp6": ("mlpconv3", 3)})


# --- nin-keras import-caffe and the published preset --------------------------------------------

PUBLISHED = Path(__file__).resolve().parents[1] / "zoo" / "weights" / "nin_cifar10.caffe"


def test_import_caffe_writes_a_preset(imported, tmp_path, capsys):
    from nin_keras.cli import main
    from nin_keras.zoo import load_preset

    out = tmp_path / "preset"
    assert main(["import-caffe", str(CAFFEMODEL), "--arch", "nin_cifar10", "--out", str(out), "--no-preprocessing", "--license", "BSD"]) == 0
    assert str(out) in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "metadata.json", "model.weights.h5"]
    preset = load_preset(out)
    assert preset.architecture == "nin_cifar10" and preset.preprocessing == []
    assert preset.metadata["source_sha256"] == SHA256 and preset.metadata["license"] == "BSD"
    assert "V1LayerParameter" in preset.metadata["source"]
    assert preset.metadata["import_command"].startswith("nin-keras import-caffe ")
    for got, want in zip(preset.model.get_weights(), imported.get_weights()):
        np.testing.assert_array_equal(got, want)
    # An existing folder is not replaced without --overwrite.
    assert main(["import-caffe", str(CAFFEMODEL), "--arch", "nin_cifar10", "--out", str(out), "--no-preprocessing"]) == 1
    err = capsys.readouterr().err
    assert "already exists (pass --overwrite to replace it)" in err and "overwrite=True" not in err


@pytest.mark.parametrize(
    "make_file, arch, message",
    [
        (lambda real: b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "nin_cifar10", "not a valid .caffemodel"),
        (lambda real: real[: len(real) // 2], "nin_cifar10", "truncated"),
        (lambda real: real, "nin_cifar100", "'cccp6'"),  # the right file, the wrong architecture
        (lambda real: BAD_FILES["empty packed pool"][0], "nin_cifar10", "empty packed field"),  # was IndexError
        (lambda real: BAD_FILES["NaN weights"][0], "nin_cifar10", "NaN or infinite"),
    ],
)
def test_import_caffe_failures_write_nothing(real_bytes, tmp_path, capsys, make_file, arch, message):
    from nin_keras.cli import main

    source = tmp_path / "in.caffemodel"
    source.write_bytes(make_file(real_bytes))
    out = tmp_path / "out" / "preset"
    assert main(["import-caffe", str(source), "--arch", arch, "--out", str(out), "--no-preprocessing"]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.fixture(scope="module")
def published():
    if not (PUBLISHED / "metadata.json").exists():
        pytest.skip(f"{PUBLISHED} not present")
    from nin_keras.zoo import load_preset

    return load_preset(PUBLISHED)


def test_published_preset_is_the_caffe_model_with_gcn_zca(published, imported):
    from nin_keras.layers import GlobalContrastNormalization, ZCAWhitening

    for got, want in zip(published.model.get_weights(), imported.get_weights()):
        np.testing.assert_array_equal(got, want)
    gcn, zca = published.preprocessing
    assert isinstance(gcn, GlobalContrastNormalization) and gcn.scale == 55.0
    assert isinstance(zca, ZCAWhitening) and zca.filter_bias == 0.1 and zca.whitening.dtype == "float16"
    whitening = keras.ops.convert_to_numpy(zca.whitening).astype(np.float32)
    np.testing.assert_allclose(whitening, whitening.T, atol=1e-3 * np.abs(whitening).max())  # ZCA is symmetric
    assert all(p.stat().st_size < 20e6 for p in PUBLISHED.iterdir())
    assert published.metadata["source_sha256"] == SHA256
    assert published.metadata["metrics"]["test_error"] < 25  # measured on CIFAR-10 (JPEG copy)


@pytest.mark.slow
def test_published_preset_full_test_accuracy(published):
    """The whole CIFAR-10 (JPEG copy) test split through the preset's raw-image model."""
    from nin_keras.train import evaluate_preset

    result = evaluate_preset(PUBLISHED, "cifar10", "test")
    assert result["examples"] == 10_000
    assert result["accuracy"] > 0.78
    assert result["error_percent"] == pytest.approx(published.metadata["metrics"]["test_error"], abs=0.01)
