"""The whitening layers ask JAX for full float32 matrix products and convolutions (issue 27.16).

On NVIDIA GPUs JAX runs float32 ``dot_general`` and ``conv_general_dilated`` in TF32 unless the
operation asks for ``precision=HIGHEST``; there ``ZCAWhitening`` was 0.019 off a float64 reference.
CI has no GPU, so these tests read the request in the traced computation: every matrix product and
convolution the layers emit, in the jaxpr and in the StableHLO that XLA compiles (also through a
Keras model's ``stateless_call``, which is what ``fit``/``predict`` jit), says HIGHEST. On the CPU
the outputs stay within 1e-5 of float64 NumPy references.
"""

from __future__ import annotations

import re

import jax
import keras
import numpy as np
import pytest

from nin_keras import layers as nl
from nin_keras.layers.lcn import gaussian_kernel

PRODUCTS = ("dot_general", "conv_general_dilated")
HIGHEST = (jax.lax.Precision.HIGHEST, jax.lax.Precision.HIGHEST)
RTOL = 1e-5  # of the largest reference value
SHAPE = (6, 6, 3)


def _images(count: int, seed: int) -> np.ndarray:
    return np.abs(np.random.default_rng(seed).normal(size=(count, *SHAPE)) * 20).astype("float32")


def _zca(store_inverse: bool = True) -> nl.ZCAWhitening:
    return nl.ZCAWhitening(filter_bias=0.1, store_inverse=store_inverse).adapt(_images(300, 1))


def _conv_whitening() -> nl.ConvWhitening:
    layer = nl.ConvWhitening(kernel_size=3)
    layer.build((None, *SHAPE))
    rng = np.random.default_rng(2)
    layer.set_weights([rng.normal(size=layer.kernel.shape).astype("float32"),
                       rng.normal(size=layer.bias.shape).astype("float32")])
    return layer


# name -> the layer's traced function, built
CALLS = {
    "ZCAWhitening": lambda: _zca(),
    "ZCAWhitening.inverse_transform": lambda: _zca().inverse_transform,
    "LocalContrastNormalization": lambda: nl.LocalContrastNormalization(kernel_size=5, sigma=1.5),
    "ConvWhitening": _conv_whitening,
}


def _sub_jaxprs(value):
    if hasattr(value, "eqns"):
        yield value
    elif hasattr(getattr(value, "jaxpr", None), "eqns"):  # a ClosedJaxpr
        yield value.jaxpr
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _sub_jaxprs(item)


def _products(jaxpr):
    """``(primitive, precision)`` of every matrix product and convolution, nested jaxprs included."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in PRODUCTS:
            yield eqn.primitive.name, eqn.params["precision"]
        for value in eqn.params.values():
            for sub in _sub_jaxprs(value):
                yield from _products(sub)


def _hlo_products(text: str) -> list[str]:
    return [line for line in text.splitlines() if re.search(r"stablehlo\.(dot_general|convolution)\b", line)]


def test_jax_does_not_ask_for_full_float32_by_default():
    # The control: without the layers' request a traced product carries no precision (TF32 on GPUs),
    # so the tests below can fail.
    x = _images(2, 0).reshape(2, -1)
    products = list(_products(jax.make_jaxpr(lambda v: keras.ops.matmul(v, v.T))(x).jaxpr))
    assert products == [("dot_general", None)]


@pytest.mark.parametrize("name", sorted(CALLS))
def test_every_product_asks_for_highest_precision(name):
    call = CALLS[name]()
    x = _images(4, 3)
    products = list(_products(jax.make_jaxpr(call)(x).jaxpr))
    assert products, f"{name} traced no matrix product or convolution"
    assert {precision for _, precision in products} == {HIGHEST}, products
    lowered = _hlo_products(jax.jit(call).lower(x).as_text())
    assert lowered and all("HIGHEST" in line and "DEFAULT" not in line for line in lowered), lowered
    # The request is scoped to the layer: what is traced after it is back to JAX's default.
    assert jax.config.jax_default_matmul_precision is None
    assert list(_products(jax.make_jaxpr(lambda v: v @ v.T)(x.reshape(4, -1)).jaxpr)) == [("dot_general", None)]


def test_a_model_of_whitening_layers_keeps_the_request_in_its_jitted_call():
    inputs = keras.Input(SHAPE)
    x = nl.GlobalContrastNormalization(scale=55.0)(inputs)
    x = _zca()(x)
    x = nl.LocalContrastNormalization(kernel_size=3)(x)
    model = keras.Model(inputs, _conv_whitening()(x))
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    step = jax.jit(lambda t, n, images: model.stateless_call(t, n, images)[0])  # as Keras jits predict
    lowered = _hlo_products(step.lower(trainable, non_trainable, _images(4, 4)).as_text())
    assert len(lowered) == 4  # ZCA's product, LCN's two, the convolution
    assert all("HIGHEST" in line and "DEFAULT" not in line for line in lowered), lowered


# ---------------------------------------------------------------- CPU numbers vs float64 NumPy
def _assert_close(actual, expected):
    actual = np.asarray(keras.ops.convert_to_numpy(actual), np.float64)
    assert actual.shape == expected.shape
    assert np.abs(actual - expected).max() <= RTOL * np.abs(expected).max()


def _weights64(layer) -> list[np.ndarray]:
    return [np.asarray(keras.ops.convert_to_numpy(w), np.float64) for w in layer.weights]


def _shifted_sum(padded: np.ndarray, size: int, height: int, width: int, tap) -> np.ndarray:
    """``sum_ij tap(i, j, window_ij)`` over the ``size x size`` windows of ``padded`` (N, H', W', C)."""
    return sum(tap(i, j, padded[:, i:i + height, j:j + width]) for i in range(size) for j in range(size))


def test_zca_is_within_1e_5_of_float64():
    layer, x = _zca(), _images(8, 5)
    mean, whitening, inverse = _weights64(layer)
    whitened = (x.reshape(8, -1) - mean) @ whitening
    _assert_close(layer(x), whitened.reshape(x.shape))
    _assert_close(layer.inverse_transform(layer(x)), ((whitened @ inverse) + mean).reshape(x.shape))


def test_lcn_is_within_1e_5_of_float64():
    x = _images(8, 6).astype(np.float64)
    kernel = gaussian_kernel(5, 1.5)
    padded = np.pad(np.concatenate([x, x**2], axis=-1), ((0, 0), (2, 2), (2, 2), (0, 0)))
    filtered = _shifted_sum(padded, 5, *SHAPE[:2], lambda i, j, window: kernel[i, j] * window)
    local_mean, local = filtered[..., :3], np.sqrt(np.maximum(filtered[..., 3:], 0))
    divisor = np.maximum(np.maximum(local.mean(axis=(1, 2), keepdims=True), local), 1e-4)
    layer = nl.LocalContrastNormalization(kernel_size=5, sigma=1.5)
    _assert_close(layer(x.astype("float32")), (x - local_mean) / divisor)


def test_conv_whitening_is_within_1e_5_of_float64():
    layer, x = _conv_whitening(), _images(8, 7)
    kernel, bias = _weights64(layer)
    padded = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)), mode="symmetric")
    expected = _shifted_sum(padded, 3, *SHAPE[:2], lambda i, j, window: window @ kernel[i, j]) + bias
    _assert_close(layer(x), expected)
