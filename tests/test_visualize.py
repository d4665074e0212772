"""nin_keras.visualize: confidence maps, CAM, deconvnet (vs a NumPy deconvnet), receptive fields, PNGs, CLI."""

import io
import json
import os
import tarfile
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
from PIL import Image

from nin_keras import layers as nl
from nin_keras import models, visualize
from nin_keras.cli import main
from nin_keras.errors import NinKerasError

from conftest import DATASETS_DIR  # noqa: E402

CIFAR_JPEG = DATASETS_DIR / "cifar10-jpeg.tar.gz"
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def cifar_test_images():
    """Two test images per class from the CIFAR-10 JPEG copy: uint8 (20, 32, 32, 3) and labels."""
    if not CIFAR_JPEG.is_file():
        pytest.skip(f"{CIFAR_JPEG} is absent")
    wanted = {f"test/{name}/{i:04d}.jpg": label for label, name in enumerate(CIFAR_CLASSES) for i in range(2)}
    found = {}
    with tarfile.open(CIFAR_JPEG) as archive:
        for member in archive:
            if member.name in wanted:
                found[member.name] = np.asarray(Image.open(io.BytesIO(archive.extractfile(member).read())).convert("RGB"))
                if len(found) == len(wanted):
                    break
    names = sorted(found)
    return np.stack([found[n] for n in names]), np.array([wanted[n] for n in names])


@pytest.fixture(scope="module")
def pretrained_nin():
    """The pretrained nin_cifar10 preset as an inference model (raw [0, 255] float images in)."""
    from nin_keras import zoo

    errors = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NIN_KERAS_OFFLINE", "1")  # bundled or cached weights only: tests never download
        for name in ("nin_cifar10", "nin_cifar10.caffe"):  # default weights, else the imported Caffe ones
            try:
                return zoo.load_preset(name).inference_model(input_dtype="float32")
            except (NinKerasError, ValueError, OSError) as err:
                errors.append(f"{name}: {err}")
    pytest.skip(f"no pretrained nin_cifar10 preset: {'; '.join(errors)}")


@pytest.fixture(scope="module")
def random_nin():
    """NIN CIFAR-10 with random weights."""
    keras.utils.set_random_seed(0)
    return models.nin_cifar10()


def _random_images(n, size=32, channels=3, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, channels)).astype("float32")


def _assert_png(path, size):
    """The PNG exists, opens, has ``size`` (width, height) and is not one flat colour."""
    path = Path(path)
    assert path.is_file()
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == size
        pixels = np.asarray(image.convert("RGB"), dtype=float)
    assert pixels.std() > 5, "image is (nearly) blank"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50


# ---------------------------------------------------------------- a NumPy deconvnet (the reference)
def np_conv(x, kernel, pad):
    """Stride-1 cross-correlation of (H, W, C) with (kh, kw, C, O), zero padding ``pad``."""
    kh, kw = kernel.shape[:2]
    xp = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    out = np.zeros((xp.shape[0] - kh + 1, xp.shape[1] - kw + 1, kernel.shape[3]))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = np.tensordot(xp[i : i + kh, j : j + kw], kernel, axes=3)
    return out


def np_conv_transpose(y, kernel, pad, in_hw):
    """The transposed filters: each output value adds ``value * kernel`` back onto its window."""
    kh, kw = kernel.shape[:2]
    xp = np.zeros((in_hw[0] + 2 * pad, in_hw[1] + 2 * pad, kernel.shape[2]))
    for i in range(y.shape[0]):
        for j in range(y.shape[1]):
            xp[i : i + kh, j : j + kw] += kernel @ y[i, j]
    return xp[pad : pad + in_hw[0], pad : pad + in_hw[1]]


def np_windows(length, k, s, ceil):
    count = -(-(length - k) // s) + 1 if ceil else (length - k) // s + 1
    return [(i * s, min(i * s + k, length)) for i in range(count)]


def np_max_pool(x, k, s, ceil):
    """Max pooling and its switches (first maximum in row-major order wins)."""
    rows, cols = np_windows(x.shape[0], k, s, ceil), np_windows(x.shape[1], k, s, ceil)
    out = np.zeros((len(rows), len(cols), x.shape[2]))
    switches = {}
    for i, (r0, r1) in enumerate(rows):
        for j, (c0, c1) in enumerate(cols):
            for c in range(x.shape[2]):
                best = None
                for r in range(r0, r1):
                    for q in range(c0, c1):
                        if best is None or x[r, q, c] > x[best[0], best[1], c]:
                            best = (r, q)
                out[i, j, c] = x[best[0], best[1], c]
                switches[i, j, c] = best
    return out, switches


def np_unpool(y, switches, shape):
    x = np.zeros(shape)
    for (i, j, c), (r, q) in switches.items():
        x[r, q, c] += y[i, j, c]
    return x


def np_avg_pool(x, k, s):
    rows, cols = np_windows(x.shape[0], k, s, True), np_windows(x.shape[1], k, s, True)
    return np.array([[x[r0:r1, c0:c1].mean(axis=(0, 1)) for c0, c1 in cols] for r0, r1 in rows])


def np_avg_unpool(y, k, s, shape):
    """Spread each pooled value evenly over its (border-clipped) window."""
    x = np.zeros(shape)
    for i, (r0, r1) in enumerate(np_windows(shape[0], k, s, True)):
        for j, (c0, c1) in enumerate(np_windows(shape[1], k, s, True)):
            x[r0:r1, c0:c1] += y[i, j] / ((r1 - r0) * (c1 - c0))
    return x


def relu(x):
    return np.maximum(x, 0.0)


def _weights(layer):
    return [np.asarray(w, dtype=np.float64) for w in layer.get_weights()]


def _tiny_keras_net():
    keras.utils.set_random_seed(1)
    inputs = keras.Input((9, 9, 2))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", bias_initializer="random_normal", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(3, 3, padding="valid", activation="relu", bias_initializer="random_normal", name="conv2")(x)
    return keras.Model(inputs, x)


def _np_project_keras_net(model, image, channel):
    (k1, b1), (k2, b2) = _weights(model.get_layer("conv1")), _weights(model.get_layer("conv2"))
    a1 = relu(np_conv(image, k1, 1) + b1)
    p1, switches = np_max_pool(a1, 2, 2, ceil=False)
    a2 = relu(np_conv(p1, k2, 0) + b2)
    r, c = np.unravel_index(np.argmax(a2[..., channel]), a2.shape[:2])
    signal = np.zeros_like(a2)
    signal[r, c, channel] = a2[r, c, channel]
    signal = np_conv_transpose(relu(signal), k2, 0, p1.shape[:2])
    signal = np_unpool(signal, switches, a1.shape)
    return np_conv_transpose(relu(signal), k1, 1, image.shape[:2]), (r, c)


def _tiny_nin(pool_mode, batch_norm=False):
    keras.utils.set_random_seed(2)
    inputs = keras.Input((8, 8, 3))
    x = nl.MLPConv((5, 4), 3, bias_initializer="random_normal", batch_norm=batch_norm, name="mlpconv1")(inputs)
    x = nl.CaffePooling2D(3, 2, mode=pool_mode, name="pool1")(x)
    x = keras.layers.Dropout(0.5, name="dropout1")(x)
    x = nl.MLPConv((3,), 3, padding="valid", bias_initializer="random_normal", batch_norm=batch_norm, name="mlpconv2")(x)
    model = keras.Model(inputs, x)
    rng = np.random.default_rng(2)
    for layer in ("mlpconv1", "mlpconv2"):
        for norm in model.get_layer(layer).norms:  # inference statistics far from the identity
            for weight, low, high in ((norm.gamma, 0.5, 2.0), (norm.beta, -0.5, 0.5),
                                      (norm.moving_mean, -0.5, 0.5), (norm.moving_variance, 0.2, 3.0)):
                weight.assign(rng.uniform(low, high, weight.shape).astype("float32"))
    return model


def _np_mlpconv(layer):
    """Forward and deconvnet-backward functions of one MLPConv, from its weights in NumPy."""
    weights = _weights(layer)
    count = len(layer.filters)
    if layer.batch_norm:
        kernels = weights[:count]
        norms = [weights[count + 4 * i : count + 4 * i + 4] for i in range(count)]  # gamma, beta, mean, var
        scales = [g / np.sqrt(v + 1e-3) for g, _, _, v in norms]
        shifts = [b - m * sc for (_, b, m, _), sc in zip(norms, scales)]
    else:
        kernels, scales, shifts = weights[0::2], [1.0] * count, weights[1::2]
    pad = layer.kernel_size[0] // 2 if layer.padding == "same" else 0

    def forward(x):
        for i, (k, sc, sh) in enumerate(zip(kernels, scales, shifts)):
            x = relu(np_conv(x, k, pad if i == 0 else 0) * sc + sh)
        return x

    def backward(signal, in_hw):
        for i in reversed(range(count)):
            signal = relu(signal) * scales[i]
            signal = np_conv_transpose(signal, kernels[i], pad if i == 0 else 0, in_hw if i == 0 else signal.shape[:2])
        return signal

    return forward, backward


def _np_project_tiny_nin(model, image, channel, pool_mode):
    forward1, backward1 = _np_mlpconv(model.get_layer("mlpconv1"))
    forward2, backward2 = _np_mlpconv(model.get_layer("mlpconv2"))
    a1 = forward1(image)
    if pool_mode == "max":
        p1, switches = np_max_pool(a1, 3, 2, ceil=True)
    else:
        p1 = np_avg_pool(a1, 3, 2)
    a2 = forward2(p1)
    r, c = np.unravel_index(np.argmax(a2[..., channel]), a2.shape[:2])
    signal = np.zeros_like(a2)
    signal[r, c, channel] = a2[r, c, channel]
    signal = backward2(signal, p1.shape[:2])
    signal = np_unpool(signal, switches, a1.shape) if pool_mode == "max" else np_avg_unpool(signal, 3, 2, a1.shape)
    return backward1(signal, image.shape[:2]), (r, c)


# ---------------------------------------------------------------- deconvnet
def _live_channel(model, images, layer=None):
    """The channel of ``layer`` (default: the output) whose weakest per-image maximum is largest."""
    if layer is None:
        outputs = model.predict(images, verbose=0)
    else:
        chain = visualize.layer_chain.flatten_chain(model)
        outputs = visualize.layer_chain.run_chain(chain, images, stop=visualize.layer_chain.find_layer(chain, layer))[-1]
    return int(outputs.max(axis=(1, 2)).min(axis=0).argmax())


def test_deconv_projection_equals_numpy_deconvnet_keras_layers():
    model = _tiny_keras_net()
    images = np.random.default_rng(3).normal(size=(2, 9, 9, 2)).astype("float32")
    channel = _live_channel(model, images)
    projections, positions = visualize.deconv_projection(model, images, "conv2", channel)
    assert projections.shape == images.shape
    for n in range(len(images)):
        expected, position = _np_project_keras_net(model, images[n].astype(np.float64), channel)
        assert tuple(positions[n]) == position
        assert np.abs(expected).max() > 0
        np.testing.assert_allclose(projections[n], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("pool_mode, batch_norm", [("max", False), ("average", False), ("max", True)])
def test_deconv_projection_equals_numpy_deconvnet_mlpconv_caffe_pooling(pool_mode, batch_norm):
    model = _tiny_nin(pool_mode, batch_norm)
    images = np.random.default_rng(4).normal(size=(3, 8, 8, 3)).astype("float32")
    channel = _live_channel(model, images)
    projections, positions = visualize.deconv_projection(model, images, "mlpconv2", channel)
    assert projections.shape == images.shape
    for n in range(len(images)):
        expected, position = _np_project_tiny_nin(model, images[n].astype(np.float64), channel, pool_mode)
        assert tuple(positions[n]) == position
        assert np.abs(expected).max() > 0
        np.testing.assert_allclose(projections[n], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "layer_fn, shape",
    [
        (lambda: nl.CaffePooling2D(3, 2), (2, 9, 8, 3)),
        (lambda: nl.CaffePooling2D(2, 2), (2, 7, 7, 2)),
        (lambda: keras.layers.MaxPooling2D(3, 2, padding="same"), (2, 9, 8, 3)),
        (lambda: keras.layers.MaxPooling2D(2, padding="valid"), (2, 7, 7, 2)),
    ],
)
def test_max_pool_switches_point_at_each_window_maximum(layer_fn, shape):
    layer = layer_fn()
    x = np.random.default_rng(5).normal(size=shape).astype("float32")
    pooled = keras.ops.convert_to_numpy(layer(x))
    rows, cols = visualize.max_pool_switches(layer, x)
    n = np.arange(shape[0])[:, None, None, None]
    c = np.arange(shape[3])[None, None, None, :]
    np.testing.assert_array_equal(x[n, rows, cols, c], pooled)


# Hand-derived receptive fields of NIN CIFAR-10 (5x5 same conv, 3/2 Caffe pool, 5x5, 3/2, 3x3):
# mlpconv1 (r)  -> rows r-2 .. r+2
# pool1 (i)     -> mlpconv1 rows 2i .. 2i+2            -> input 2i-2 .. 2i+4
# mlpconv2 (i)  -> pool1 rows i-2 .. i+2               -> input 2i-6 .. 2i+8
# pool2 (i)     -> mlpconv2 rows 2i .. 2i+2            -> input 4i-6 .. 4i+12
# mlpconv3 (i)  -> pool2 rows i-1 .. i+1               -> input 4i-10 .. 4i+16
NIN_FIELDS = {
    "mlpconv1": lambda i: (i - 2, i + 3),
    "pool1": lambda i: (2 * i - 2, 2 * i + 5),
    "mlpconv2": lambda i: (2 * i - 6, 2 * i + 9),
    "pool2": lambda i: (4 * i - 6, 4 * i + 13),
    "mlpconv3": lambda i: (4 * i - 10, 4 * i + 17),
}


@pytest.mark.parametrize("layer", sorted(NIN_FIELDS))
def test_receptive_fields_of_nin_match_hand_derivation(random_nin, layer):
    size = random_nin.get_layer(layer).output.shape[1]
    for position in [(0, 0), (size // 2, 1), (size - 1, size - 2)]:
        expected = tuple(
            (max(lo, 0), min(hi, 32)) for lo, hi in (NIN_FIELDS[layer](p) for p in position)
        )
        assert visualize.receptive_field(random_nin, layer, position) == expected


def _assert_inside_fields(model, images, layer, channel):
    projections, positions = visualize.deconv_projection(model, images, layer, channel)
    assert projections.shape == images.shape
    for projection, position in zip(projections, positions):
        (r0, r1), (c0, c1) = visualize.receptive_field(model, layer, position)
        outside = projection.copy()
        outside[r0:r1, c0:c1] = 0
        assert np.abs(projection[r0:r1, c0:c1]).max() > 0
        assert np.abs(outside).max() == 0


@pytest.mark.parametrize("layer", ["mlpconv1", "pool1", "mlpconv2", "mlpconv3"])
def test_projection_is_nonzero_only_inside_the_receptive_field(random_nin, layer):
    images = _random_images(3, seed=6)
    _assert_inside_fields(random_nin, images, layer, _live_channel(random_nin, images, layer))


def test_pretrained_projection_is_nonzero_only_inside_the_receptive_field(pretrained_nin, cifar_test_images):
    """Through the preset's inference model: cast, GCN and ZCA in front, projections in whitened space."""
    images = cifar_test_images[0][::4].astype("float32")
    for layer in ("mlpconv1", "mlpconv2", "pool2", "mlpconv3"):
        _assert_inside_fields(pretrained_nin, images, layer, _live_channel(pretrained_nin, images, layer))


def test_top_activations_are_each_images_strongest_and_sorted(random_nin):
    images = _random_images(12, seed=7)
    top = visualize.top_activations(random_nin, images, "pool1", 5, k=4, batch_size=5)
    maps = keras.Model(random_nin.inputs, random_nin.get_layer("pool1").output).predict(images, verbose=0)[..., 5]
    strongest = maps.reshape(12, -1).max(axis=1)
    assert [t.index for t in top] == list(np.argsort(-strongest)[:4])
    for t in top:
        assert t.value == pytest.approx(strongest[t.index], rel=1e-5)
        assert maps[t.index][t.position] == pytest.approx(t.value, rel=1e-5)


def test_deconv_rejects_unknown_layer_channel_and_unsupported_layers():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.LayerNormalization(name="norm")(x)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv2")(x)
    model = keras.Model(inputs, x)
    images = _random_images(1, size=8)
    with pytest.raises(ValueError, match="'norm'.*LayerNormalization"):
        visualize.deconv_projection(model, images, "conv2", 0)
    with pytest.raises(ValueError, match="layer='nope'"):
        visualize.deconv_projection(model, images, "nope", 0)
    with pytest.raises(ValueError, match="channel=9"):
        visualize.deconv_projection(model, images, "conv1", 9)


# ---------------------------------------------------------------- confidence maps and CAM
def test_confidence_maps_average_to_the_predictions(random_nin):
    """The maps are the last mlpconv's output as Keras computes it through the model's own graph
    (not the layer chain the visualizer runs), the probabilities are the model's, and the softmax
    of each map's mean is those probabilities (the paper's global average pooling)."""
    images = _random_images(4, seed=8)
    maps, probabilities = visualize.class_confidence_maps(random_nin, images)
    assert maps.shape == (4, 8, 8, 10)
    last = keras.Model(random_nin.input, random_nin.get_layer("mlpconv3").output)
    np.testing.assert_allclose(maps, last.predict(images, verbose=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(probabilities, random_nin.predict(images, verbose=0), rtol=1e-4, atol=1e-6)
    means = maps.mean(axis=(1, 2))
    softmax = np.exp(means - means.max(1, keepdims=True))
    np.testing.assert_allclose(softmax / softmax.sum(1, keepdims=True), probabilities, rtol=1e-4, atol=1e-6)


def test_pretrained_confidence_map_of_predicted_class_has_highest_mean(pretrained_nin, cifar_test_images):
    images, labels = cifar_test_images
    maps, probabilities = visualize.class_confidence_maps(pretrained_nin, images.astype("float32"))
    predicted = probabilities.argmax(axis=1)
    np.testing.assert_array_equal(maps.mean(axis=(1, 2)).argmax(axis=1), predicted)
    # A trained network, not a random one: most of these test images are recognized.
    assert (predicted == labels).mean() >= 0.7


def test_cam_of_gap_dense_model_averages_to_the_logits():
    keras.utils.set_random_seed(9)
    inputs = keras.Input((10, 10, 3))
    x = keras.layers.Conv2D(6, 3, activation="relu", name="features")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dropout(0.2)(x)
    x = keras.layers.Dense(4, activation="softmax", bias_initializer="random_normal", name="fc")(x)
    model = keras.Model(inputs, x)
    images = _random_images(3, size=10, seed=10)
    cams, probabilities = visualize.class_activation_maps(model, images)
    features = keras.Model(inputs, model.get_layer("features").output).predict(images, verbose=0)
    kernel, bias = model.get_layer("fc").get_weights()
    np.testing.assert_allclose(cams, np.einsum("nhwk,kc->nhwc", features, kernel), rtol=1e-4, atol=1e-5)
    logits = cams.mean(axis=(1, 2)) + bias
    softmax = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(softmax / softmax.sum(1, keepdims=True), probabilities, rtol=1e-4, atol=1e-6)


def test_cam_of_nin_is_its_last_mlpconvs_class_maps(random_nin):
    """A NIN has no Dense layer: its CAM for class c is the last mlpconv's map c (Zhou et al.'s
    weights are the identity), as Keras computes that layer through the model's graph."""
    images = _random_images(2, seed=11)
    cams, probabilities = visualize.class_activation_maps(random_nin, images)
    last = keras.Model(random_nin.input, random_nin.get_layer("mlpconv3").output)
    np.testing.assert_allclose(cams, last.predict(images, verbose=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(probabilities, random_nin.predict(images, verbose=0), rtol=1e-4, atol=1e-6)


def test_models_without_the_needed_layers_are_rejected():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.Flatten()(x)
    fc = keras.Model(inputs, keras.layers.Dense(5, activation="softmax")(x), name="fc_net")
    images = _random_images(1, size=8)
    with pytest.raises(ValueError, match="'fc_net'.*no global average pooling"):
        visualize.class_activation_maps(fc, images)
    with pytest.raises(ValueError, match="'fc_net' has no GlobalAveragePoolingHead"):
        visualize.class_confidence_maps(fc, images)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    x = keras.layers.Dense(6, activation="relu")(x)
    two_dense = keras.Model(inputs, keras.layers.Dense(5)(x), name="mlp_head")
    with pytest.raises(ValueError, match="exactly one Dense"):
        visualize.class_activation_maps(two_dense, images)


def test_branching_models_are_rejected():
    inputs = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    b = keras.layers.Conv2D(4, 1)(inputs)
    model = keras.Model(inputs, keras.layers.Add()([a, b]), name="branchy")
    with pytest.raises(ValueError, match="'branchy' is not a chain"):
        visualize.deconv_projection(model, _random_images(1, size=8), "add", 0)


def test_inference_model_with_whitening_projects_in_network_input_space(tmp_path):
    """Preprocessing (cast, GCN, ZCA) is where the projection stops; the pictures un-whiten it."""
    from nin_keras import zoo

    network = _tiny_nin("max")
    gcn = nl.GlobalContrastNormalization(scale=55.0)
    zca = nl.ZCAWhitening(filter_bias=0.1)
    zca.adapt(keras.ops.convert_to_numpy(gcn(_random_images(300, size=8, seed=12))))
    model = zoo.inference_model(network, [gcn, zca], input_dtype="float32")
    images = _random_images(2, size=8, seed=13)
    whitened = keras.ops.convert_to_numpy(zca(gcn(images)))
    channel = _live_channel(network, whitened)
    via_inference, _ = visualize.deconv_projection(model, images, "mlpconv2", channel)
    via_network, _ = visualize.deconv_projection(network, whitened, "mlpconv2", channel)
    assert np.abs(via_network).max() > 0
    np.testing.assert_allclose(via_inference, via_network, rtol=1e-4, atol=1e-6)
    # Shown un-whitened: the GCN images, stretched per image to [0, 1].
    shown = visualize.display_images(whitened, whitening=zca)
    gcn_images = keras.ops.convert_to_numpy(gcn(images))
    lo = gcn_images.min(axis=(1, 2, 3), keepdims=True)
    hi = gcn_images.max(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(shown, (gcn_images - lo) / (hi - lo), atol=2e-3)
    # With whitening the deconv picture gains an un-whitened projection column (5 instead of 4).
    _assert_png(visualize.plot_deconv(model, images, "mlpconv2", channel, tmp_path, cell=64), (5 * 64, 2 * 64))


# ---------------------------------------------------------------- PNG files
def test_confidence_and_cam_pngs(tmp_path, random_nin):
    images = _random_images(3, seed=14)
    out = visualize.plot_confidence_maps(
        random_nin, images, tmp_path / "conf.png", labels=[0, 1, 2], class_names=CIFAR_CLASSES, cell=64
    )
    _assert_png(out, (11 * 64, 3 * 64))
    out = visualize.plot_class_activation_maps(random_nin, images, tmp_path / "cam.png", labels=[0, 1, 2], top=2, cell=80)
    _assert_png(out, (3 * 80, 3 * 80))


def test_pretrained_confidence_png(tmp_path, pretrained_nin, cifar_test_images):
    images, labels = cifar_test_images
    out = visualize.plot_confidence_maps(pretrained_nin, images[:4], tmp_path / "c.png", labels=labels[:4],
                                         class_names=CIFAR_CLASSES)
    _assert_png(out, (11 * 96, 4 * 96))


def test_deconv_and_top_patch_pngs(tmp_path, random_nin):
    images = _random_images(10, seed=15)
    out = visualize.plot_deconv(random_nin, images[:2], "mlpconv2", 3, tmp_path / "d.png", cell=64)
    _assert_png(out, (4 * 64, 2 * 64))
    out = visualize.plot_top_patches(random_nin, images, "pool1", 3, k=9, path=tmp_path / "t.png", cell=64)
    _assert_png(out, (6 * 64, 3 * 64))
    out = visualize.plot_top_patches(random_nin, images, "pool1", 3, k=5, path=tmp_path / "t5.png", cell=64)
    _assert_png(out, (6 * 64, 2 * 64))


def test_filter_png_and_default_output_folder(tmp_path, monkeypatch, random_nin):
    monkeypatch.chdir(tmp_path)
    out = visualize.plot_filters(random_nin)
    assert out == Path("nin_keras_visualize/filters_mlpconv1.png")
    _assert_png(out, (14 * 32, 14 * 32))  # 192 filters -> 14 x 14 grid
    name, kernel = visualize.first_layer_filters(random_nin)
    np.testing.assert_array_equal(kernel, random_nin.get_layer("mlpconv1").get_weights()[0])
    with pytest.raises(ValueError, match="'mlpconv2'.*96 input channels"):
        visualize.plot_filters(random_nin, layer="mlpconv2")


@pytest.fixture(scope="module")
def training_run(tmp_path_factory):
    """A run folder with the training loop's own metrics.csv / metrics.json for 10 epochs."""
    from nin_keras.train.history import write_history

    rng = np.random.default_rng(16)
    history = [
        {"epoch": e, "loss": 2.0 / e, "accuracy": 0.5 + 0.04 * e, "val_loss": 2.2 / e + rng.uniform(0, 0.05),
         "val_accuracy": 0.45 + 0.04 * e, "learning_rate": 0.1 * 0.5 ** (e // 4), "seconds": 12.5}
        for e in range(1, 11)
    ]
    run = tmp_path_factory.mktemp("run")
    write_history(run, history)
    return run, history


def test_curves_from_training_metrics_files(tmp_path, training_run):
    run, history = training_run
    for name in ("metrics.csv", "metrics.json"):
        rows = visualize.load_metrics(run / name)
        assert len(rows) == len(history)
        for row, expected in zip(rows, history):
            assert row == pytest.approx(expected)
    _assert_png(visualize.plot_training_curves(run / "metrics.json", tmp_path / "curves.png"), (1200, 360))
    # Keras's History.history layout (columns, no epoch, maybe Keras 2's "lr") is read and drawn too.
    (tmp_path / "keras.json").write_text(json.dumps({"loss": [1.0, 0.5, 0.4], "accuracy": [0.6, 0.8, 0.9]}))
    rows = visualize.load_metrics(tmp_path / "keras.json")
    assert rows == [{"epoch": 1, "loss": 1.0, "accuracy": 0.6}, {"epoch": 2, "loss": 0.5, "accuracy": 0.8},
                    {"epoch": 3, "loss": 0.4, "accuracy": 0.9}]
    _assert_png(visualize.plot_training_curves(rows, tmp_path / "no_lr.png"), (1200, 360))
    (tmp_path / "keras2.csv").write_text("epoch,loss,lr\n0,1.5,0.1\n1,1.0,0.05\n")
    assert visualize.load_metrics(tmp_path / "keras2.csv")[1] == {"epoch": 1.0, "loss": 1.0, "learning_rate": 0.05}
    with pytest.raises(NinKerasError, match="does not exist"):
        visualize.load_metrics(tmp_path / "missing.csv")
    (tmp_path / "empty.csv").write_text("epoch,loss\n")
    with pytest.raises(NinKerasError, match="holds no epochs"):
        visualize.load_metrics(tmp_path / "empty.csv")


def test_curves_of_a_run_without_a_single_error_draw_without_a_warning(tmp_path):
    # A small fine-tune's hold-out is often all right: an error of 0 has no place on a log axis.
    rows = [{"epoch": e, "loss": 0.5 / e, "accuracy": 1.0, "val_accuracy": 1.0, "learning_rate": 0.01} for e in (1, 2)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _assert_png(visualize.plot_training_curves(rows, tmp_path / "curves.png"), (1200, 360))


# ---------------------------------------------------------------- CLI
def test_cli_visualize_curves_and_filters(tmp_path, training_run, capsys):
    run, _ = training_run
    assert main(["visualize", "curves", str(run / "metrics.csv"), "--out", str(tmp_path / "out")]) == 0
    _assert_png(tmp_path / "out" / "curves.png", (1200, 360))
    capsys.readouterr()
    # --output is the deprecated spelling of --out: it still works, and says which flag to use.
    assert main(["visualize", "curves", str(run / "metrics.csv"), "--output", str(tmp_path / "old")]) == 0
    _assert_png(tmp_path / "old" / "curves.png", (1200, 360))
    assert "--output is deprecated; use --out" in capsys.readouterr().err
    keras.utils.set_random_seed(19)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(16, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x))
    model.save(tmp_path / "small.keras")
    assert main(["visualize", "filters", "--model", str(tmp_path / "small.keras"), "--out", str(tmp_path / "out")]) == 0
    _assert_png(tmp_path / "out" / "filters_conv.png", (4 * 32, 4 * 32))
    assert str(tmp_path / "out" / "filters_conv.png") in capsys.readouterr().out

    images = _random_images(3, size=8, seed=20).astype("uint8")
    files = []
    for n, image in enumerate(images):
        files.append(str(tmp_path / f"{n}.png"))
        Image.fromarray(image).save(files[-1])
    common = ["--model", str(tmp_path / "small.keras"), "--images", *files, "--out", str(tmp_path / "out")]
    assert main(["visualize", "cam", *common, "--top", "2"]) == 0
    _assert_png(tmp_path / "out" / "cam.png", (3 * 96, 3 * 96))
    conv = keras.Model(inputs, model.get_layer("conv").output)
    channel = _live_channel(conv, images.astype("float32"))
    assert main(["visualize", "deconv", *common, "--layer", "conv", "--channel", str(channel)]) == 0
    _assert_png(tmp_path / "out" / f"deconv_conv_c{channel}.png", (4 * 96, 3 * 96))
    _assert_png(tmp_path / "out" / f"top3_conv_c{channel}.png", (4 * 96, 2 * 96))  # 3 patches: 2 x 2 grid
    # A file of another size goes through the input policy; in strict mode it is the user's to
    # fix: one line on stderr, exit status 1.
    Image.fromarray(np.zeros((9, 8, 3), "uint8")).save(tmp_path / "odd.png")
    odd = [*common[:2], "--images", str(tmp_path / "odd.png"), "--out", str(tmp_path / "odd")]
    assert main(["visualize", "cam", *odd]) == 0
    assert main(["visualize", "cam", *odd, "--no-resize"]) == 1
    assert "the model takes 8x8" in capsys.readouterr().err
    # So is a layer the model does not have (exit status 1, like every library error; 2 is argparse's).
    assert main(["visualize", "deconv", *common, "--layer", "nope", "--channel", "0"]) == 1
    assert "layer='nope': no such layer" in capsys.readouterr().err


def _zoo_names():
    from nin_keras import zoo

    return zoo.list_models()


@pytest.mark.parametrize("name", _zoo_names())
def test_every_zoo_architecture_is_visualized_or_clearly_refused(name):
    """GAP-head models give CAMs whose means are the logits; the others raise a ValueError that says why."""
    from nin_keras import zoo

    keras.utils.set_random_seed(17)
    model = zoo.create_model(name)
    chain = visualize.layer_chain.flatten_chain(model)
    images = _random_images(1, size=model.input_shape[1], channels=model.input_shape[3], seed=18)
    if isinstance(chain[-1], nl.GlobalAveragePoolingHead):
        cams, probabilities = visualize.class_activation_maps(model, images)
        assert cams.shape[-1] == probabilities.shape[-1]
        np.testing.assert_array_equal(cams.mean(axis=(1, 2)).argmax(-1), probabilities.argmax(-1))
    else:
        with pytest.raises(ValueError, match=f"'{name}' cannot give class activation maps"):
            visualize.class_activation_maps(model, images)
    first = next(layer for layer in chain if layer.weights)
    if isinstance(first, (nl.MLPConv, keras.layers.Conv2D)):
        projections, _ = visualize.deconv_projection(model, images, first.name, 0)
        assert projections.shape == images.shape
    else:
        with pytest.raises(ValueError, match="cannot be run backwards by the deconvnet"):
            visualize.deconv_projection(model, images, first.name, 0)
