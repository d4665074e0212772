"""nin_keras.layers against independent NumPy references; shapes, configs and argument errors."""

import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest

import nin_keras.layers
from nin_keras.layers import (
    CaffePooling2D,
    ConvWhitening,
    DropConnect,
    FusedBatchNormalization,
    GlobalAveragePoolingHead,
    GlobalContrastNormalization,
    LocalContrastNormalization,
    Maxout,
    MaxoutConv2D,
    MaxoutMLPConv,
    MLPConv,
    RandomPadCrop,
    StochasticPooling2D,
    ZCAWhitening,
)

RNG = np.random.default_rng(0)


# ---------------------------------------------------------------- NumPy references
def np_conv2d_same(x, kernel, bias, stride=1):
    """Direct 'same' convolution (TF's padding split: extra row/col at the bottom/right)."""
    n, h, w, c = x.shape
    kh, kw, _, out = kernel.shape
    oh, ow = math.ceil(h / stride), math.ceil(w / stride)
    pad_h = max((oh - 1) * stride + kh - h, 0)
    pad_w = max((ow - 1) * stride + kw - w, 0)
    xp = np.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    y = np.zeros((n, oh, ow, out))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, i * stride : i * stride + kh, j * stride : j * stride + kw, :]
            y[:, i, j, :] = np.tensordot(patch, kernel, axes=([1, 2, 3], [0, 1, 2]))
    return y + bias


def np_caffe_pool(x, k, s, mode):
    """Caffe's PoolingLayer forward (pad 0) written as its loops: ceil-rounded size, clipped windows."""
    n, h, w, c = x.shape
    oh = int(math.ceil((h - k) / s)) + 1
    ow = int(math.ceil((w - k) / s)) + 1
    y = np.zeros((n, oh, ow, c))
    for ph in range(oh):
        for pw in range(ow):
            hstart, wstart = ph * s, pw * s
            hend, wend = min(hstart + k, h), min(wstart + k, w)
            window = x[:, hstart:hend, wstart:wend, :]
            if mode == "max":
                y[:, ph, pw, :] = window.max(axis=(1, 2))
            else:
                pool_size = (hend - hstart) * (wend - wstart)
                y[:, ph, pw, :] = window.sum(axis=(1, 2)) / pool_size
    return y


# ---------------------------------------------------------------- MLPConv
@pytest.mark.parametrize("strides", [1, 2])
def test_mlpconv_equals_conv_then_1x1_convs(strides):
    x = RNG.normal(size=(2, 9, 9, 3)).astype("float32")
    layer = MLPConv((6, 5, 4), kernel_size=3, strides=strides, bias_initializer="random_normal")
    y = keras.ops.convert_to_numpy(layer(x))
    w = [keras.ops.convert_to_numpy(v) for v in layer.weights]
    ref = x.astype("float64")
    for kernel, bias in zip(w[0::2], w[1::2]):
        ref = np.maximum(np_conv2d_same(ref, kernel, bias, stride=strides if kernel.shape[0] > 1 else 1), 0)
    assert y.shape == layer.compute_output_shape(x.shape)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)


def test_mlpconv_weight_layout_and_linear_last():
    layer = MLPConv((8, 7, 2), kernel_size=5, linear_last=True, bias_initializer="random_normal")
    layer.build((None, 12, 12, 3))
    assert [tuple(v.shape) for v in layer.weights] == [(5, 5, 3, 8), (8,), (1, 1, 8, 7), (7,), (1, 1, 7, 2), (2,)]
    assert [v.path.split("/")[-1] for v in layer.weights] == [
        "kernel_0", "bias_0", "kernel_1", "bias_1", "kernel_2", "bias_2"
    ]
    # Negative outputs survive only when the last activation is linear.
    x = RNG.normal(size=(4, 12, 12, 3)).astype("float32")
    assert keras.ops.convert_to_numpy(layer(x)).min() < 0


def test_mlpconv_batch_norm_inference_matches_reference():
    layer = MLPConv((4, 3), kernel_size=3, batch_norm=True)
    x = RNG.normal(size=(2, 6, 6, 2)).astype("float32")
    layer.build(x.shape)
    for norm in layer.norms:  # non-trivial statistics, so the check means something
        c = norm.gamma.shape[0]
        norm.set_weights([RNG.uniform(0.5, 2, c), RNG.normal(size=c), RNG.normal(size=c), RNG.uniform(0.5, 2, c)])
    y = keras.ops.convert_to_numpy(layer(x, training=False))
    ref = x.astype("float64")
    for kernel, norm in zip(layer.kernels, layer.norms):
        gamma, beta, mean, var = (keras.ops.convert_to_numpy(v) for v in norm.weights)
        ref = np_conv2d_same(ref, keras.ops.convert_to_numpy(kernel), 0.0)
        ref = np.maximum((ref - mean) / np.sqrt(var + norm.epsilon) * gamma + beta, 0)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)


def test_mlpconv_channels_first_shape_logic():
    layer = MLPConv((6, 4), kernel_size=3, strides=2, padding="valid", data_format="channels_first")
    assert layer.compute_output_shape((None, 3, 11, 9)) == (None, 4, 5, 4)
    layer.build((None, 3, 11, 9))
    assert tuple(layer.kernels[0].shape) == (3, 3, 3, 6)


# ---------------------------------------------------------------- CaffePooling2D
@pytest.mark.parametrize("mode", ["max", "average"])
@pytest.mark.parametrize("size,k,s", [(32, 3, 2), (16, 3, 2), (7, 3, 2), (8, 8, 1), (10, 3, 3), (9, 2, 2)])
def test_caffe_pooling_matches_caffe_loops(mode, size, k, s):
    x = RNG.normal(size=(2, size, size + 1, 3)).astype("float32")
    layer = CaffePooling2D(k, s, mode=mode)
    y = keras.ops.convert_to_numpy(layer(x))
    ref = np_caffe_pool(x.astype("float64"), k, s, mode)
    assert y.shape == ref.shape == layer.compute_output_shape(x.shape)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)


def test_caffe_pooling_sizes_of_the_nin_model():
    assert CaffePooling2D(3, 2).compute_output_shape((None, 32, 32, 3)) == (None, 16, 16, 3)
    assert CaffePooling2D(3, 2).compute_output_shape((None, 16, 16, 3)) == (None, 8, 8, 3)
    cf = CaffePooling2D(3, 2, data_format="channels_first")
    assert cf.compute_output_shape((None, 3, 32, 15)) == (None, 3, 16, 7)


# ---------------------------------------------------------------- GAP head
@pytest.mark.parametrize("activation", ["softmax", None])
def test_gap_head_is_spatial_mean(activation):
    x = RNG.normal(size=(3, 5, 4, 7)).astype("float32")
    y = keras.ops.convert_to_numpy(GlobalAveragePoolingHead(activation=activation)(x))
    ref = x.astype("float64").mean(axis=(1, 2))
    if activation == "softmax":
        ref = np.exp(ref - ref.max(axis=1, keepdims=True))
        ref /= ref.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)


def test_gap_head_channels_first_shape():
    assert GlobalAveragePoolingHead(data_format="channels_first").compute_output_shape((2, 10, 8, 8)) == (2, 10)


# ---------------------------------------------------------------- Maxout
def test_maxout_is_max_over_pieces():
    units, pieces = 5, 3
    layer = Maxout(units, pieces, bias_initializer="random_normal")
    x = RNG.normal(size=(4, 2, 7)).astype("float32")  # rank 3: applies to the last axis
    y = keras.ops.convert_to_numpy(layer(x))
    ref = np.empty((4, 2, units))
    for u in range(units):
        kernel, bias = layer.unit_pieces(u)
        assert kernel.shape == (7, pieces) and bias.shape == (pieces,)
        ref[..., u] = (x.astype("float64") @ kernel + bias).max(axis=-1)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
    # The documented layout: column u * pieces + p is piece p of unit u.
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    np.testing.assert_array_equal(layer.unit_pieces(2)[0][:, 1], kernel[:, 2 * pieces + 1])


def test_maxout_conv_is_max_over_piece_convolutions():
    filters, pieces = 4, 2
    layer = MaxoutConv2D(filters, pieces, 3, padding="same", bias_initializer="random_normal")
    x = RNG.normal(size=(2, 6, 5, 3)).astype("float32")
    y = keras.ops.convert_to_numpy(layer(x))
    ref = np.stack(
        [np_conv2d_same(x.astype("float64"), *layer.unit_pieces(f)).max(axis=-1) for f in range(filters)], axis=-1
    )
    assert y.shape == layer.compute_output_shape(x.shape) == (2, 6, 5, filters)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)


def test_maxout_conv_channels_first_shape_logic():
    layer = MaxoutConv2D(6, 3, 5, strides=2, data_format="channels_first")
    assert layer.compute_output_shape((None, 3, 32, 31)) == (None, 6, 14, 14)
    layer.build((None, 3, 32, 31))
    assert tuple(layer.kernel.shape) == (5, 5, 3, 18)


def test_unit_pieces_rejects_bad_unit():
    layer = Maxout(3, 2)
    layer.build((None, 4))
    with pytest.raises(ValueError, match="`unit`"):
        layer.unit_pieces(3)


# ---------------------------------------------------------------- DropConnect
def _dense_reference(layer, x, activation=lambda z: z):
    kernel, bias = (keras.ops.convert_to_numpy(v).astype("float64") for v in (layer.kernel, layer.bias))
    return activation(x.astype("float64") @ kernel + bias)


@pytest.mark.parametrize("activation", [None, "relu"])
def test_dropconnect_mean_inference_is_dense(activation):
    layer = DropConnect(6, rate=0.5, activation=activation, bias_initializer="random_normal")
    x = RNG.normal(size=(4, 3, 5)).astype("float32")
    y = keras.ops.convert_to_numpy(layer(x))
    ref = _dense_reference(layer, x, (lambda z: np.maximum(z, 0)) if activation else (lambda z: z))
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_dropconnect_gaussian_inference_matches_rectified_gaussian_mean():
    from math import erf, pi, sqrt

    rate = 0.4
    layer = DropConnect(3, rate=rate, activation="relu", inference="gaussian", samples=20000, seed=3,
                        bias_initializer="random_normal")
    x = RNG.normal(size=(2, 5)).astype("float32")
    y = keras.ops.convert_to_numpy(layer(x))
    kernel = keras.ops.convert_to_numpy(layer.kernel).astype("float64")
    mean = _dense_reference(layer, x)
    std = np.sqrt(rate / (1 - rate) * (x.astype("float64") ** 2 @ kernel**2))
    # E[max(u, 0)] for u ~ N(mean, std^2).
    t = mean / std
    cdf = 0.5 * (1 + np.vectorize(erf)(t / sqrt(2)))
    ref = mean * cdf + std * np.exp(-0.5 * t**2) / sqrt(2 * pi)
    np.testing.assert_allclose(y, ref, atol=0.03 * std.max())
    # Linear activation: the Gaussian average is the mean itself.
    linear = DropConnect(3, rate=rate, inference="gaussian")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(linear(x)), _dense_reference(linear, x), rtol=1e-5, atol=1e-5)


def test_dropconnect_training_drops_weights_not_activations():
    rate = 0.5
    layer = DropConnect(200, rate=rate, bias_initializer="random_normal", seed=1)
    x = np.eye(4, dtype="float32")[[2, 2]]  # two identical one-hot rows select kernel row 2
    y = keras.ops.convert_to_numpy(layer(x, training=True)).astype("float64")
    kernel = keras.ops.convert_to_numpy(layer.kernel)[2].astype("float64")
    bias = keras.ops.convert_to_numpy(layer.bias).astype("float64")
    kept = np.isclose(y[0], kernel / (1 - rate) + bias, rtol=1e-5, atol=1e-6)
    dropped = np.isclose(y[0], bias, rtol=1e-5, atol=1e-6)
    assert np.all(kept | dropped) and 0.3 < dropped.mean() < 0.7
    np.testing.assert_array_equal(y[0], y[1])  # one mask per batch (documented)


# ---------------------------------------------------------------- StochasticPooling2D
def _windows(x, k, s):
    """NumPy list of windows [(n, i, j, c) -> values] for 'valid' pooling."""
    n, h, w, c = x.shape
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    nested = [[x[:, i * s : i * s + k, j * s : j * s + k, :].reshape(n, k * k, c) for j in range(ow)] for i in range(oh)]
    return np.array(nested).transpose(2, 0, 1, 3, 4)  # (n, oh, ow, k*k, c)


def test_stochastic_pooling_inference_is_probability_weighted_average():
    x = np.maximum(RNG.normal(size=(2, 7, 7, 3)), 0).astype("float32")
    x[0, :3, :3, 0] = 0  # an all-zero window pools to 0
    y = keras.ops.convert_to_numpy(StochasticPooling2D(3, 2)(x))
    win = _windows(x.astype("float64"), 3, 2)
    total = win.sum(axis=3)
    ref = np.divide((win**2).sum(axis=3), total, out=np.zeros_like(total), where=total > 0)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)
    assert y[0, 0, 0, 0] == 0


def test_stochastic_pooling_training_returns_values_from_each_window():
    x = np.maximum(RNG.normal(size=(3, 9, 9, 4)), 0).astype("float32")
    layer = StochasticPooling2D(3, 2, seed=5)
    win = _windows(x, 3, 2)
    for _ in range(3):
        y = keras.ops.convert_to_numpy(layer(x, training=True))
        assert y.shape == win.shape[:3] + win.shape[4:]
        present = np.any(win == y[:, :, :, None, :], axis=3)
        assert present.all()
        # A zero (probability 0) is returned only from an all-zero window.
        assert np.all((y > 0) | (win.max(axis=3) == 0))


def test_stochastic_pooling_samples_by_value():
    x = np.zeros((1, 1, 2, 4000), "float32")
    x[0, 0, 0], x[0, 0, 1] = 1.0, 3.0
    y = keras.ops.convert_to_numpy(StochasticPooling2D((1, 2), seed=0)(x, training=True))
    assert set(np.unique(y)) <= {1.0, 3.0}
    assert abs((y == 3.0).mean() - 0.75) < 0.03


def test_stochastic_pooling_is_seedable():
    x = RNG.uniform(size=(2, 8, 8, 3)).astype("float32")
    a = keras.ops.convert_to_numpy(StochasticPooling2D(2, seed=7)(x, training=True))
    b = keras.ops.convert_to_numpy(StochasticPooling2D(2, seed=7)(x, training=True))
    np.testing.assert_array_equal(a, b)


def test_stochastic_pooling_same_padding_shape():
    layer = StochasticPooling2D(2, padding="same", data_format="channels_first")
    assert layer.compute_output_shape((None, 3, 7, 6)) == (None, 3, 4, 3)
    assert StochasticPooling2D(2, padding="same")(np.ones((1, 7, 6, 3), "float32")).shape == (1, 4, 3, 3)


# ---------------------------------------------------------------- MaxoutMLPConv
@pytest.mark.parametrize("batch_norm", [False, True])
def test_maxout_mlpconv_equals_numpy_maxout_units(batch_norm):
    """Each convolution (bias or BN, inference statistics), then the max over each unit's pieces."""
    pieces = (1, 3, 2)
    layer = MaxoutMLPConv((5, 4, 3), pieces, kernel_size=3, strides=2, batch_norm=batch_norm,
                          bias_initializer="random_normal")
    x = RNG.normal(size=(2, 9, 9, 3)).astype("float32")
    layer.build(x.shape)
    for norm in layer.norms:  # non-trivial statistics and some negative gammas
        c = norm.gamma.shape[0]
        norm.set_weights([RNG.uniform(-2, 2, c), RNG.normal(size=c), RNG.normal(size=c), RNG.uniform(0.5, 2, c)])
    y = keras.ops.convert_to_numpy(layer(x, training=False))
    ref = x.astype("float64")
    for i, (units, k) in enumerate(zip(layer.filters, pieces)):
        kernel = keras.ops.convert_to_numpy(layer.kernels[i])
        assert kernel.shape[-1] == units * k
        if batch_norm:
            gamma, beta, mean, var = (keras.ops.convert_to_numpy(v) for v in layer.norms[i].weights)
            z = np_conv2d_same(ref, kernel, 0.0, stride=2 if i == 0 else 1)
            z = (z - mean) / np.sqrt(var + layer.norms[i].epsilon) * gamma + beta
        else:
            z = np_conv2d_same(ref, kernel, keras.ops.convert_to_numpy(layer.biases[i]), stride=2 if i == 0 else 1)
        # Unit u is the max of channels u*k ... u*k + k - 1 (unit-major, as in MaxoutConv2D).
        ref = np.stack([z[..., u * k:(u + 1) * k].max(axis=-1) for u in range(units)], axis=-1)
    assert y.shape == layer.compute_output_shape(x.shape) == (2, 5, 5, 3)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)


def test_maxout_mlpconv_one_piece_is_linear_and_weight_layout():
    layer = MaxoutMLPConv((6, 2), 1, kernel_size=3, bias_initializer="random_normal")
    x = RNG.normal(size=(2, 7, 7, 3)).astype("float32")
    y = keras.ops.convert_to_numpy(layer(x))
    assert [tuple(v.shape) for v in layer.weights] == [(3, 3, 3, 6), (6,), (1, 1, 6, 2), (2,)]
    # No nonlinearity with one piece: the layer is linear in its input (up to the bias).
    y2 = keras.ops.convert_to_numpy(layer(2 * x))
    bias = keras.ops.convert_to_numpy(layer(np.zeros_like(x)))
    np.testing.assert_allclose(y2 - bias, 2 * (y - bias), rtol=1e-4, atol=1e-4)
    assert y.min() < 0


# ---------------------------------------------------------------- channels_first == channels_last
def _nchw_conv_supported():
    try:
        keras.ops.conv(np.zeros((1, 1, 3, 3), "float32"), np.zeros((1, 1, 1, 1), "float32"), data_format="channels_first")
        return True
    except Exception:  # TensorFlow's CPU kernels have no NCHW convolution
        return False


CHANNELS_FIRST_CASES = {
    "MLPConv": (lambda fmt: MLPConv((4, 3), 3, strides=2, data_format=fmt, bias_initializer="random_normal"), True),
    "MaxoutConv2D": (lambda fmt: MaxoutConv2D(4, 2, 3, padding="same", data_format=fmt), True),
    "MaxoutMLPConv": (lambda fmt: MaxoutMLPConv((4, 3), (1, 3), 3, strides=2, data_format=fmt,
                                                bias_initializer="random_normal"), True),
    "CaffePooling2D_max": (lambda fmt: CaffePooling2D(3, 2, data_format=fmt), False),
    "CaffePooling2D_average": (lambda fmt: CaffePooling2D(3, 2, mode="average", data_format=fmt), False),
    "GlobalAveragePoolingHead": (lambda fmt: GlobalAveragePoolingHead(data_format=fmt), False),
    "StochasticPooling2D": (lambda fmt: StochasticPooling2D(3, 2, data_format=fmt), False),
}


@pytest.mark.parametrize("fmt", ["channels_first", "channels_last"])
def test_add_channel_bias_when_width_equals_channels(fmt):
    from nin_keras.layers._args import add_channel_bias

    x = RNG.normal(size=(2, 4, 5, 4) if fmt == "channels_first" else (2, 5, 4, 4)).astype("float32")
    bias = RNG.normal(size=4).astype("float32")
    expected = x + (bias.reshape(1, 4, 1, 1) if fmt == "channels_first" else bias)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(add_channel_bias(x, bias, fmt)), expected, rtol=1e-6)


@pytest.mark.parametrize("name", sorted(CHANNELS_FIRST_CASES))
def test_channels_first_equals_channels_last(name):
    factory, needs_nchw_conv = CHANNELS_FIRST_CASES[name]
    if needs_nchw_conv and not _nchw_conv_supported():
        pytest.skip("no NCHW convolution kernel on this device (TensorFlow CPU); shape logic tested above")
    x = RNG.uniform(size=(2, 9, 8, 3)).astype("float32")
    last, first = factory("channels_last"), factory("channels_first")
    y_last = keras.ops.convert_to_numpy(last(x))
    first.build((None, 3, 9, 8))
    first.set_weights(last.get_weights())  # same layout in both formats
    y_first = keras.ops.convert_to_numpy(first(np.transpose(x, (0, 3, 1, 2))))
    if y_first.ndim == 4:
        y_first = np.transpose(y_first, (0, 2, 3, 1))
    np.testing.assert_allclose(y_first, y_last, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- fused batch normalization
def _np_batch_norm_step(x, gamma, beta, moving_mean, moving_variance, momentum, epsilon):
    """One training step of batch normalization over (batch, rows, cols): the output and the
    moving statistics after it (the batch's biased variance, Keras's rule)."""
    mean, variance = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    out = (x - mean) / np.sqrt(variance + epsilon) * gamma + beta
    return out, moving_mean * momentum + mean * (1 - momentum), moving_variance * momentum + variance * (1 - momentum)


def _norm_pair(momentum=0.9, **kwargs):
    """A FusedBatchNormalization and a keras.layers.BatchNormalization with the same values."""
    x = (RNG.normal(size=(4, 5, 6, 3)) * 3 + 1).astype("float32")
    layers = [FusedBatchNormalization(momentum=momentum, **kwargs),
              keras.layers.BatchNormalization(momentum=momentum, **kwargs)]
    values = [RNG.normal(size=3).astype("float32") for _ in range(2)] + [
        RNG.normal(size=3).astype("float32"), RNG.uniform(0.5, 2, size=3).astype("float32")]
    for layer in layers:
        layer.build(x.shape)
        layer.set_weights(values)  # gamma, beta, moving mean, moving variance
    return x, layers, values


def test_fused_batch_norm_training_step_equals_numpy_and_keras():
    x, (fused, stock), (gamma, beta, moving_mean, moving_variance) = _norm_pair(momentum=0.9)
    out = keras.ops.convert_to_numpy(fused(x, training=True))
    want, want_mean, want_variance = _np_batch_norm_step(x.astype("float64"), gamma, beta, moving_mean,
                                                         moving_variance, 0.9, fused.epsilon)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(fused.moving_mean), want_mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(fused.moving_variance), want_variance, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out, keras.ops.convert_to_numpy(stock(x, training=True)), rtol=1e-5, atol=1e-5)
    # Inference: the moving statistics, as Keras's layer.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(fused(x, training=False)),
                               keras.ops.convert_to_numpy(stock(x, training=False)), rtol=1e-5, atol=1e-5)


def test_fused_batch_norm_frozen_layer_uses_and_keeps_its_moving_statistics():
    x, (fused, stock), (gamma, beta, moving_mean, moving_variance) = _norm_pair()
    fused.trainable = stock.trainable = False
    out = keras.ops.convert_to_numpy(fused(x, training=True))
    np.testing.assert_allclose(out, (x - moving_mean) / np.sqrt(moving_variance + fused.epsilon) * gamma + beta,
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(fused.moving_mean), moving_mean)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the fused kernel is TensorFlow's")
def test_fused_batch_norm_trains_through_one_fused_kernel_with_keras_gradients():
    import tensorflow as tf

    x, (fused, stock), _ = _norm_pair()
    weights = tf.constant(np.linspace(-1, 1, x.size).reshape(x.shape).astype("float32"))
    graph = tf.function(lambda images: fused(images, training=True)).get_concrete_function(
        tf.TensorSpec(x.shape, "float32")).graph
    assert "FusedBatchNormV3" in {op.type for op in graph.get_operations()}
    gradients = []
    for layer in (fused, stock):
        images = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(images)
            loss = tf.reduce_sum(layer(images, training=True) * weights)
        gradients.append(tape.gradient(loss, [images, layer.gamma, layer.beta]))
    for ours, theirs in zip(*gradients):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-4, atol=1e-5)
    # Under mixed_bfloat16 the kernel takes bfloat16 maps and gives them back, statistics float32.
    mixed = FusedBatchNormalization(dtype="mixed_bfloat16")
    out = mixed(x, training=True)
    assert keras.backend.standardize_dtype(out.dtype) == "bfloat16"
    want, _, _ = _np_batch_norm_step(x.astype("float64"), 1.0, 0.0, 0.0, 1.0, mixed.momentum, mixed.epsilon)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(keras.ops.cast(out, "float32")), want, rtol=2e-2, atol=2e-2)
    assert keras.backend.standardize_dtype(mixed.moving_variance.dtype) == "float32"


# ---------------------------------------------------------------- configs and errors
LAYER_FACTORIES = {
    "MLPConv": lambda: MLPConv((4, 3), 3, strides=2, padding="valid", linear_last=True, kernel_regularizer="l2"),
    "CaffePooling2D": lambda: CaffePooling2D(3, 2, mode="average"),
    "GlobalAveragePoolingHead": lambda: GlobalAveragePoolingHead(activation=None),
    "Maxout": lambda: Maxout(4, 3, use_bias=False, kernel_constraint=keras.constraints.MaxNorm(2.0, axis=0)),
    "MaxoutConv2D": lambda: MaxoutConv2D(4, 2, (3, 5), strides=2, padding="same", bias_regularizer="l2"),
    "MaxoutMLPConv": lambda: MaxoutMLPConv((4, 3), (1, 5), 3, strides=2, padding="valid", batch_norm=True),
    "DropConnect": lambda: DropConnect(5, 0.3, activation="relu", inference="gaussian", samples=8, seed=2),
    "StochasticPooling2D": lambda: StochasticPooling2D((2, 3), 1, padding="same", seed=4),
    "FusedBatchNormalization": lambda: FusedBatchNormalization(momentum=0.9, epsilon=1e-4),
}


@pytest.mark.parametrize("name", sorted(LAYER_FACTORIES))
def test_config_round_trip(name):
    layer = LAYER_FACTORIES[name]()
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer)


@pytest.mark.parametrize(
    "factory,argument",
    [
        (lambda: MLPConv((8, -1), 3), "filters"),
        (lambda: MLPConv((), 3), "filters"),
        (lambda: MLPConv(8, 3), "filters"),
        (lambda: MLPConv((8,), 0), "kernel_size"),
        (lambda: MLPConv((8,), 3, padding="full"), "padding"),
        (lambda: MLPConv((8,), 3, data_format="nhwc"), "data_format"),
        (lambda: CaffePooling2D(3, 2, mode="median"), "mode"),
        (lambda: CaffePooling2D(-3, 2), "pool_size"),
        (lambda: CaffePooling2D(2, 3), "strides"),
        (lambda: Maxout(-4, 2), "units"),
        (lambda: Maxout(4, 0), "pieces"),
        (lambda: MaxoutConv2D(0, 2, 3), "filters"),
        (lambda: MaxoutConv2D(4, 0, 3), "pieces"),
        (lambda: MaxoutConv2D(4, 2, (3, 3, 3)), "kernel_size"),
        (lambda: MaxoutMLPConv((4, 3), (1, 0), 3), "pieces"),
        (lambda: MaxoutMLPConv((4, 3), (1, 5, 5), 3), "pieces"),
        (lambda: MaxoutMLPConv((), 1, 3), "filters"),
        (lambda: DropConnect(-2), "units"),
        (lambda: DropConnect(4, rate=1.0), "rate"),
        (lambda: DropConnect(4, inference="sample"), "inference"),
        (lambda: DropConnect(4, samples=0), "samples"),
        (lambda: StochasticPooling2D(0), "pool_size"),
        (lambda: StochasticPooling2D(2, strides=(1, -1)), "strides"),
        (lambda: StochasticPooling2D(2, padding="causal"), "padding"),
    ],
)
def test_bad_arguments_name_the_argument(factory, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        factory()


@pytest.mark.parametrize(
    "layer,shape",
    [
        (MLPConv((4,), 3), (2, 8, 3)),
        (CaffePooling2D(3, 2), (2, 8, 3)),
        (GlobalAveragePoolingHead(), (2, 8, 3)),
        (MaxoutConv2D(4, 2, 3), (2, 8, 3)),
        (MaxoutMLPConv((4,), 2, 3), (2, 8, 3)),
        (Maxout(4, 2), (8,)),
        (DropConnect(4), (8,)),
        (StochasticPooling2D(2), (2, 8, 3)),
    ],
)
def test_wrong_input_rank_is_rejected(layer, shape):
    with pytest.raises(ValueError, match="rank|ndim"):
        layer(np.zeros(shape, "float32"))


# ---------------------------------------------------------------- per-layer dtype policies
# Every library layer (checked below), built from its factory with a `dtype` argument, and the
# input shape it runs on.
DTYPE_CASES = {
    "MLPConv": (lambda dtype: MLPConv((4, 3), 3, dtype=dtype), (6, 6, 3)),
    "MLPConv_batch_norm": (lambda dtype: MLPConv((4, 3), 3, batch_norm=True, dtype=dtype), (6, 6, 3)),
    "CaffePooling2D": (lambda dtype: CaffePooling2D(3, 2, mode="average", dtype=dtype), (7, 7, 3)),
    "GlobalAveragePoolingHead": (lambda dtype: GlobalAveragePoolingHead(dtype=dtype), (5, 5, 4)),
    "Maxout": (lambda dtype: Maxout(4, 3, dtype=dtype), (6,)),
    "MaxoutConv2D": (lambda dtype: MaxoutConv2D(4, 2, 3, dtype=dtype), (6, 6, 3)),
    "MaxoutMLPConv_batch_norm": (lambda dtype: MaxoutMLPConv((4, 3), (1, 3), 3, batch_norm=True, dtype=dtype), (6, 6, 3)),
    "DropConnect": (lambda dtype: DropConnect(5, 0.3, activation="relu", dtype=dtype), (6,)),
    "StochasticPooling2D": (lambda dtype: StochasticPooling2D(2, dtype=dtype), (6, 6, 3)),
    "RandomPadCrop": (lambda dtype: RandomPadCrop(2, dtype=dtype), (6, 6, 3)),
    "GlobalContrastNormalization": (lambda dtype: GlobalContrastNormalization(scale=5.0, dtype=dtype), (6, 6, 3)),
    "LocalContrastNormalization": (lambda dtype: LocalContrastNormalization(5, dtype=dtype), (8, 8, 3)),
    "ZCAWhitening": (lambda dtype: ZCAWhitening(dtype=dtype), (3, 3, 2)),
    "ConvWhitening": (lambda dtype: ConvWhitening(3, dtype=dtype), (6, 6, 3)),
    "FusedBatchNormalization": (lambda dtype: FusedBatchNormalization(dtype=dtype), (6, 6, 3)),
}
# Loose enough for bfloat16's 8-bit mantissa over these small layers, tight enough to catch an
# output that was not computed from the same weights.
MIXED_TOLERANCE = 0.05


def test_dtype_cases_cover_every_library_layer():
    exported = {value for value in vars(nin_keras.layers).values()
                if isinstance(value, type) and issubclass(value, keras.layers.Layer)}
    # MixUpCutMix takes (images, targets): its dtype test is in tests/test_augmentation.py.
    exported.remove(nin_keras.layers.MixUpCutMix)
    assert {type(factory("float32")) for factory, _ in DTYPE_CASES.values()} == exported


def _seeded_weights(layer):
    rng = np.random.default_rng(3)
    for weight in layer.weights:
        value = rng.normal(size=weight.shape) * 0.3
        if "variance" in weight.path:
            value = np.abs(value) + 0.5
        weight.assign(value.astype(weight.dtype))


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("name", sorted(DTYPE_CASES))
def test_per_layer_mixed_policy_under_a_float32_global_policy(name, policy):
    factory, shape = DTYPE_CASES[name]
    assert keras.config.dtype_policy().name == "float32"
    x = RNG.uniform(0, 2, size=(2, *shape)).astype("float32")
    layer, reference = factory(policy), factory("float32")
    layer.build(x.shape)
    _seeded_weights(layer)
    reference.build(x.shape)
    reference.set_weights(layer.get_weights())
    compute_dtype = policy.removeprefix("mixed_")
    # Sublayers (the two batch normalizations of MLPConv and MaxoutMLPConv) follow the layer's
    # policy, not the global one.
    sublayer_policies = [sub.dtype_policy.name for sub in layer._flatten_layers(include_self=False)]
    assert sublayer_policies == [policy] * (2 if name.endswith("_batch_norm") else 0)
    y = layer(x, training=False)
    assert keras.backend.standardize_dtype(y.dtype) == compute_dtype
    assert {keras.backend.standardize_dtype(w.dtype) for w in layer.weights} <= {"float32"}
    expected = keras.ops.convert_to_numpy(reference(x, training=False))
    actual = keras.ops.convert_to_numpy(keras.ops.cast(y, "float32"))
    assert np.abs(actual - expected).max() <= MIXED_TOLERANCE * max(1.0, np.abs(expected).max())

    clone = type(layer).from_config(layer.get_config())
    assert clone.dtype_policy.name == policy
    assert keras.backend.standardize_dtype(clone(x, training=False).dtype) == compute_dtype


def test_fit_preprocessing_fits_keras_normalization_per_channel_on_every_backend():
    """Per-channel standardization in a recipe: Keras's own ``Normalization`` fitted by
    ``fit_preprocessing`` on the images through the layers before it (its adapt takes an iterable
    only where TensorFlow is installed, so on JAX it must be given one array)."""
    from nin_keras.data.arrays import fit_preprocessing

    images = np.random.default_rng(3).integers(0, 256, (101, 6, 5, 3)).astype(np.uint8)
    normalization = keras.layers.Normalization(axis=-1)
    fit_preprocessing([keras.layers.Rescaling(1 / 255), normalization], images, chunk=17)
    pixels = images.reshape(-1, 3).astype(np.float64) / 255
    np.testing.assert_allclose(np.ravel(normalization.mean), pixels.mean(0), rtol=1e-5)
    np.testing.assert_allclose(np.ravel(normalization.variance), pixels.var(0), rtol=1e-4)
