"""Tests of nin_keras.layers.ConvWhitening against float64 NumPy references written here."""

from __future__ import annotations

import numpy as np
import pytest

from nin_keras.layers import ConvWhitening, ZCAWhitening

NUMPY_PAD = {"zeros": "constant", "reflect": "reflect", "symmetric": "symmetric"}


def reference_conv(images: np.ndarray, kernel: np.ndarray, bias: np.ndarray, padding: str) -> np.ndarray:
    """y[n, i, j, o] = sum_{a, b, c} pad(x)[n, i + a, j + b, c] * kernel[a, b, c, o] + bias[o], in float64."""
    k = kernel.shape[0]
    half = k // 2
    padded = np.pad(images.astype(np.float64), ((0, 0), (half, half), (half, half), (0, 0)), mode=NUMPY_PAD[padding])
    n, h, w, _ = images.shape
    out = np.zeros((n, h, w, kernel.shape[-1]))
    for a in range(k):
        for b in range(k):
            out += np.einsum("nijc,co->nijo", padded[:, a:a + h, b:b + w], kernel[a, b].astype(np.float64))
    return out + bias


def explicit_patches(images: np.ndarray, k: int, padding: str) -> np.ndarray:
    """Patch rows built pixel by pixel (independent of the layer's sliding-window code)."""
    half = k // 2
    padded = np.pad(images.astype(np.float64), ((0, 0), (half, half), (half, half), (0, 0)), mode=NUMPY_PAD[padding])
    rows = []
    for n in range(images.shape[0]):
        for i in range(images.shape[1]):
            for j in range(images.shape[2]):
                rows.append(padded[n, i:i + k, j:j + k, :].reshape(-1))
    return np.array(rows)


def smooth_images(count: int, size: int = 8, seed: int = 0) -> np.ndarray:
    """Correlated random images (neighbouring pixels alike, like natural images)."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(count, size + 2, size + 2, 3))
    smooth = (noise[:, :-2, :-2] + noise[:, 1:-1, 1:-1] + noise[:, 2:, 2:] + noise[:, 1:-1, :-2]) / 2
    return (smooth + rng.normal(size=(1, 1, 1, 3))).astype(np.float32)


@pytest.mark.parametrize("padding", ["zeros", "reflect", "symmetric"])
@pytest.mark.parametrize("kernel_size", [1, 3, 5])
def test_call_matches_numpy_convolution(padding, kernel_size):
    rng = np.random.default_rng(kernel_size)
    images = rng.normal(size=(2, 9, 7, 3)).astype(np.float32)
    layer = ConvWhitening(kernel_size=kernel_size, padding=padding)
    layer.build(images.shape)
    np.testing.assert_allclose(np.asarray(layer(images)), images, atol=1e-6)  # identity before adapt
    kernel = rng.normal(size=layer.kernel.shape).astype(np.float32)
    bias = rng.normal(size=layer.bias.shape).astype(np.float32)
    layer.kernel.assign(kernel)
    layer.bias.assign(bias)
    np.testing.assert_allclose(np.asarray(layer(images)), reference_conv(images, kernel, bias, padding),
                               rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("padding", ["zeros", "symmetric"])
def test_distillation_is_the_least_squares_solution(padding):
    images = smooth_images(40)
    teacher = ZCAWhitening(filter_bias=0.1).adapt(images)
    layer = ConvWhitening(kernel_size=3, padding=padding).adapt(images, teacher=teacher)

    # Reference: np.linalg.lstsq over explicit patches (plus a constant column) to the teacher's
    # own output, computed here with the dense matrix in float64.
    mean = np.asarray(teacher.mean, np.float64)
    whitening = np.asarray(teacher.whitening, np.float64)
    target = ((images.reshape(40, -1) - mean) @ whitening).reshape(-1, 3)
    features = np.hstack([explicit_patches(images, 3, padding), np.ones((40 * 64, 1))])
    solution, *_ = np.linalg.lstsq(features, target, rcond=None)
    np.testing.assert_allclose(np.asarray(layer.kernel).reshape(27, 3), solution[:27], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(layer.bias), solution[27], rtol=1e-4, atol=1e-5)
    # The fitted layer reproduces the least-squares prediction.
    predicted = (features @ solution).reshape(images.shape)
    np.testing.assert_allclose(np.asarray(layer(images)), predicted, rtol=1e-4, atol=1e-4)


def test_patch_zca_fit_matches_numpy():
    images = smooth_images(60, seed=3)
    layer = ConvWhitening(kernel_size=3, padding="reflect", filter_bias=0.05).adapt(images)
    rows = explicit_patches(images, 3, "reflect")
    mean = rows.mean(axis=0)
    covariance = np.cov(rows, rowvar=False, bias=True)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance + 0.05 * np.eye(27))
    whitening = eigenvectors @ np.diag(eigenvalues ** -0.5) @ eigenvectors.T
    centre = [(1 * 3 + 1) * 3 + c for c in range(3)]  # pixel (1, 1) of the 3x3 patch, each channel
    expected = ((rows - mean) @ whitening[:, centre]).reshape(images.shape)
    np.testing.assert_allclose(np.asarray(layer(images)), expected, rtol=1e-4, atol=1e-4)


def test_fit_is_deterministic_for_a_seed_and_streams_datasets():
    import tensorflow as tf

    images = smooth_images(120, seed=5)
    teacher = ZCAWhitening(filter_bias=0.1).adapt(images)

    def fitted(**kwargs):
        layer = ConvWhitening(kernel_size=3).adapt(images, teacher=teacher, **kwargs)
        return np.asarray(layer.kernel)

    np.testing.assert_array_equal(fitted(max_examples=50, seed=1), fitted(max_examples=50, seed=1))
    assert not np.array_equal(fitted(max_examples=50, seed=1), fitted(max_examples=50, seed=2))
    # A dataset of batches gives the same fit as the array (float64 sums either way).
    streamed = ConvWhitening(kernel_size=3).adapt(tf.data.Dataset.from_tensor_slices(images).batch(17), teacher=teacher)
    np.testing.assert_allclose(np.asarray(streamed.kernel), fitted(), rtol=1e-5, atol=1e-6)


def test_serialization_tf_data_and_a_model_give_the_same_numbers(tmp_path):
    import keras
    import tensorflow as tf

    images = smooth_images(80, seed=7)
    layer = ConvWhitening(kernel_size=5, padding="reflect").adapt(images)
    expected = np.asarray(layer(images))

    clone = ConvWhitening.from_config(layer.get_config())
    clone.build(images.shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(np.asarray(clone(images)), expected)

    mapped = np.concatenate(list(tf.data.Dataset.from_tensor_slices(images).batch(16).map(layer).as_numpy_iterator()))
    np.testing.assert_allclose(mapped, expected, rtol=1e-6, atol=1e-6)

    model = keras.Sequential([keras.Input(images.shape[1:]), layer])
    path = tmp_path / "whiten.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(np.asarray(reloaded(images)), expected)


def test_bad_arguments_and_data_are_clear_errors():
    images = smooth_images(40)
    with pytest.raises(ValueError, match="odd"):
        ConvWhitening(kernel_size=4)
    with pytest.raises(ValueError, match="padding"):
        ConvWhitening(padding="wrap")
    with pytest.raises(ValueError, match="larger than the 8x8 image"):
        ConvWhitening(kernel_size=9).adapt(images)
    with pytest.raises(ValueError, match="larger than the 8x8 image"):
        ConvWhitening(kernel_size=11)(images)
    with pytest.raises(ValueError, match="too few"):
        ConvWhitening(kernel_size=5).adapt(images[:20])  # 76 unknowns per channel, 20 images
    with pytest.raises(ValueError, match="NaN"):
        ConvWhitening(kernel_size=3).adapt(np.full((40, 8, 8, 3), np.nan, np.float32))
    teacher = ZCAWhitening().adapt(smooth_images(40, size=6))
    with pytest.raises(ValueError, match="teacher"):
        ConvWhitening(kernel_size=3).adapt(images, teacher=teacher)
