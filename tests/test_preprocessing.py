"""GCN, ZCA, LCN and RandomPadCrop against independent float64 NumPy references (pylearn2's formulas)."""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from scipy.signal import convolve2d  # noqa: E402

from nin_keras.data.pipeline import make_pipeline  # noqa: E402
from nin_keras.layers import (ConvWhitening, GlobalContrastNormalization,  # noqa: E402
                              LocalContrastNormalization, RandomPadCrop, ZCAWhitening)

from conftest import DATASETS_DIR as DATASETS  # noqa: E402

RTOL = 1e-5


# ---------------------------------------------------------------- references (float64, pylearn2)
def gcn_reference(x, scale=1.0, subtract_mean=True, use_std=False, sqrt_bias=0.0, min_divisor=1e-8):
    """pylearn2.expr.preprocessing.global_contrast_normalize on flattened examples."""
    shape = x.shape
    x = x.reshape(len(x), -1).astype(np.float64)
    mean = x.mean(axis=1)
    x = x - mean[:, None] if subtract_mean else x.copy()
    if use_std:
        ddof = 1 if x.shape[1] > 1 else 0
        normalizers = np.sqrt(sqrt_bias + x.var(axis=1, ddof=ddof)) / scale
    else:
        normalizers = np.sqrt(sqrt_bias + (x**2).sum(axis=1)) / scale
    normalizers[normalizers < min_divisor] = 1.0
    return (x / normalizers[:, None]).reshape(shape)


def zca_reference(x, filter_bias):
    """pylearn2.datasets.preprocessing.ZCA.fit: mean, whitening P, inverse and eigen-decomposition."""
    x = x.reshape(len(x), -1).astype(np.float64)
    mean = x.mean(axis=0)
    centered = x - mean
    eigs, eigv = np.linalg.eigh(centered.T @ centered / len(x) + filter_bias * np.eye(x.shape[1]))
    whitening = (eigv * np.sqrt(1.0 / eigs)) @ eigv.T
    inverse = (eigv * np.sqrt(eigs)) @ eigv.T
    return mean, whitening, inverse, eigs - filter_bias, eigv


def pylearn2_gaussian(kernel_shape, sigma=2.0):
    kernel = np.zeros((kernel_shape, kernel_shape))
    mid = np.floor(kernel_shape / 2.0)
    for i in range(kernel_shape):
        for j in range(kernel_shape):
            u, v = i - mid, j - mid
            kernel[i, j] = np.exp(-(u**2 + v**2) / (2.0 * sigma**2)) / (2 * np.pi * sigma**2)
    return kernel / kernel.sum()


def lcn_reference(x, kernel_size=7, sigma=2.0, threshold=1e-4):
    """pylearn2 lecun_lcn per channel: 'full' convolution cropped by mid, uncentered energy."""
    x = x.astype(np.float64)
    kernel = pylearn2_gaussian(kernel_size, sigma)
    mid = kernel_size // 2
    out = np.empty_like(x)
    for b in range(x.shape[0]):
        for c in range(x.shape[3]):
            image = x[b, :, :, c]
            crop = (slice(mid, -mid), slice(mid, -mid)) if mid else (slice(None), slice(None))
            centered = image - convolve2d(image, kernel, mode="full")[crop]
            denom = np.sqrt(convolve2d(image**2, kernel, mode="full")[crop])
            divisor = np.maximum(np.maximum(denom.mean(), denom), threshold)
            out[b, :, :, c] = centered / divisor
    return out


def assert_close(actual, expected, rtol=RTOL):
    """Elementwise within rtol, with an absolute floor of rtol times the data's scale."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


# ---------------------------------------------------------------- data
@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def mnist_slice():
    path = DATASETS / "mnist.npz"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    with np.load(path) as data:
        return data["x_train"][:2000, :, :, None]


@pytest.fixture(scope="module")
def cifar_jpeg_slice():
    path = DATASETS / "cifar10-jpeg.tar.gz"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    import io

    from PIL import Image

    from nin_keras.data.archive import iter_files

    images = []
    for _, data in iter_files(path, lambda p: p.suffix == ".jpg"):
        images.append(np.asarray(Image.open(io.BytesIO(data))))
        if len(images) == 64:
            break
    return np.stack(images)


# ---------------------------------------------------------------- GCN
@pytest.mark.parametrize("kwargs", [
    dict(scale=55.0),
    dict(),
    dict(use_std=True, sqrt_bias=10.0),
    dict(subtract_mean=False, scale=3.0),
    dict(use_std=True, subtract_mean=False),
])
def test_gcn_matches_pylearn2_on_random_images(rng, kwargs):
    x = rng.integers(0, 256, (16, 8, 8, 3)).astype(np.uint8)
    assert_close(GlobalContrastNormalization(**kwargs)(x), gcn_reference(x, **kwargs))


def test_gcn_matches_pylearn2_on_real_images(mnist_slice, cifar_jpeg_slice):
    assert_close(GlobalContrastNormalization(scale=55.0)(cifar_jpeg_slice),
                 gcn_reference(cifar_jpeg_slice, scale=55.0))
    assert_close(GlobalContrastNormalization()(mnist_slice[:64]), gcn_reference(mnist_slice[:64]))


def test_gcn_flat_image_divisor_floor():
    x = np.full((2, 4, 4, 3), 7.0, np.float32)
    x[1, 0, 0, 0] = 8.0
    y = np.asarray(GlobalContrastNormalization(scale=55.0)(x))
    np.testing.assert_array_equal(y[0], 0.0)  # divisor 0 < min_divisor -> 1, not a division by 0
    assert_close(y, gcn_reference(x, scale=55.0))


def test_gcn_clamps_a_tiny_divisor_where_pylearn2_replaces_it():
    """The one documented departure from pylearn2: a nonzero divisor below min_divisor is raised
    to min_divisor (the clamp an integer-only artifact can run), not replaced by 1."""
    x = np.zeros((1, 4, 4, 1), np.float32)
    x[0, 0, 0, 0] = 1e-9  # divisor sqrt(sum(centered**2)) / 55 ~ 2e-11 < 1e-8
    y = np.asarray(GlobalContrastNormalization(scale=55.0)(x), np.float64)
    centered = x.astype(np.float64) - x.mean()
    assert_close(y, centered / 1e-8)
    assert not np.allclose(y, gcn_reference(x, scale=55.0))  # pylearn2 leaves it unscaled


# ---------------------------------------------------------------- ZCA
def correlated(rng, n, d):
    return (rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d)).astype(np.float32)


def test_zca_fit_and_transform_match_pylearn2(rng):
    x = correlated(rng, 3000, 48).reshape(3000, 4, 4, 3)
    zca = ZCAWhitening(filter_bias=0.1).adapt(x)
    mean, whitening, inverse, _, _ = zca_reference(x, 0.1)
    assert_close(zca.mean.numpy(), mean)
    assert_close(zca.whitening.numpy(), whitening)
    assert_close(zca.inverse.numpy(), inverse)
    expected = ((x.reshape(3000, -1) - mean) @ whitening).reshape(x.shape)
    assert_close(zca(x), expected)


def test_zca_whitened_covariance_and_inverse_on_real_data(mnist_slice):
    crop = mnist_slice[:, 4:24, 4:24]  # 400 of the 784 pixels keep the eigh quick
    x = np.asarray(GlobalContrastNormalization(scale=55.0)(crop), np.float64)
    zca = ZCAWhitening(filter_bias=0.1).adapt(x)
    _, _, _, eigenvalues, eigenvectors = zca_reference(x, 0.1)
    y = np.asarray(zca(x), np.float64).reshape(len(x), -1)
    covariance = eigenvectors.T @ (y.T @ y / len(y)) @ eigenvectors
    expected = np.diag(np.maximum(eigenvalues, 0) / (np.maximum(eigenvalues, 0) + 0.1))
    np.testing.assert_allclose(covariance, expected, atol=2e-4)
    assert_close(zca.inverse_transform(y.reshape(x.shape)), x, rtol=1e-4)


def test_zca_without_stored_inverse_solves_instead(rng):
    x = correlated(rng, 1000, 48).reshape(1000, 4, 4, 3)
    stored, solved = ZCAWhitening().adapt(x), ZCAWhitening(store_inverse=False).adapt(x)
    assert [w.name for w in solved.weights] == ["mean", "whitening"]
    y = np.asarray(stored(x))
    assert_close(solved(x), y)
    assert_close(solved.inverse_transform(y), np.asarray(stored.inverse_transform(y)), rtol=1e-4)
    assert ZCAWhitening.from_config(solved.get_config()).store_inverse is False


def test_zca_streaming_adapt_equals_array_adapt(rng):
    x = correlated(rng, 1000, 27).reshape(1000, 3, 3, 3)
    labels = np.zeros(1000, np.int64)
    from_array = ZCAWhitening().adapt(x)
    from_dataset = ZCAWhitening().adapt(tf.data.Dataset.from_tensor_slices((x, labels)).batch(96))
    for a, b in zip(from_array.weights, from_dataset.weights):
        assert_close(b.numpy(), a.numpy(), rtol=1e-6)


def test_zca_float16_matrices_halve_the_file_and_stay_close(rng, tmp_path):
    x = correlated(rng, 2000, 192).reshape(2000, 8, 8, 3)
    sizes, outputs = {}, {}
    for dtype in ("float32", "float16"):
        zca = ZCAWhitening(matrix_dtype=dtype).adapt(x)
        assert zca.whitening.dtype == dtype and zca.inverse.dtype == dtype
        outputs[dtype] = np.asarray(zca(x))
        assert outputs[dtype].dtype == np.float32  # compute stays float32
        model = keras.Sequential([keras.Input((8, 8, 3)), zca])
        model.save(tmp_path / f"{dtype}.keras")
        sizes[dtype] = (tmp_path / f"{dtype}.keras").stat().st_size
    assert sizes["float16"] < 0.6 * sizes["float32"]
    error = np.linalg.norm(outputs["float16"] - outputs["float32"]) / np.linalg.norm(outputs["float32"])
    assert 0 < error < 5e-3


def test_zca_bad_input(rng):
    x = correlated(rng, 100, 12).reshape(100, 2, 2, 3)
    with pytest.raises(ValueError, match="NaN"):
        ZCAWhitening().adapt(np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x))
    with pytest.raises(ValueError, match="no examples"):
        ZCAWhitening().adapt(x[:0])
    with pytest.raises(ValueError, match="not positive definite"):
        ZCAWhitening(filter_bias=0.0).adapt(x[:5])  # 5 examples cannot span 12 dimensions
    zca = ZCAWhitening().adapt(x)
    with pytest.raises(ValueError):
        zca(np.zeros((4, 2, 2, 1), np.float32))  # wrong channel count
    with pytest.raises(ValueError, match="matrix_dtype"):
        ZCAWhitening(matrix_dtype="int8")
    with pytest.raises(ValueError, match="batches"):
        ZCAWhitening().adapt(tf.data.Dataset.from_tensor_slices(x.reshape(100, -1)[:, 0]))


# ---------------------------------------------------------------- TF32 (issue 27.16)
@pytest.fixture
def tf32_enabled():
    """TensorFlow's default TF32 setting for the test, and the setting before it put back after."""
    before = tf.config.experimental.tensor_float_32_execution_enabled()
    tf.config.experimental.enable_tensor_float_32_execution(True)
    yield
    tf.config.experimental.enable_tensor_float_32_execution(before)


WHITENING_CALLS = {
    "ZCAWhitening": lambda x: ZCAWhitening().adapt(x)(x),
    "ZCAWhitening.inverse_transform": lambda x: ZCAWhitening().adapt(x).inverse_transform(x),
    "LocalContrastNormalization": lambda x: LocalContrastNormalization(kernel_size=3)(x),
    "ConvWhitening": lambda x: ConvWhitening(kernel_size=3)(x),
    "ConvWhitening in a tf.function": lambda x: tf.function(ConvWhitening(kernel_size=3))(x),
}


@pytest.mark.parametrize("name", sorted(WHITENING_CALLS))
def test_whitening_layers_turn_tensorflow_tf32_off(rng, tf32_enabled, name):
    # TF32 is one process-wide switch read when kernels run, so the layers turn it off for good
    # (nin_keras.layers._precision); on this CPU-only machine they do so without a warning.
    x = rng.normal(size=(64, 4, 4, 3)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        WHITENING_CALLS[name](x)
    assert not tf.config.experimental.tensor_float_32_execution_enabled()


def test_turning_tf32_off_warns_where_tensorflow_sees_a_gpu(rng, tf32_enabled, monkeypatch):
    visible = tf.config.list_physical_devices
    monkeypatch.setattr(tf.config, "list_physical_devices",
                        lambda kind=None: ["GPU:0 (played)"] if kind == "GPU" else visible(kind))
    with pytest.warns(RuntimeWarning, match=r"TF32 execution off for this process"):
        LocalContrastNormalization(kernel_size=3)(rng.normal(size=(2, 4, 4, 1)).astype(np.float32))
    assert not tf.config.experimental.tensor_float_32_execution_enabled()
    with warnings.catch_warnings():  # already off: nothing to say a second time
        warnings.simplefilter("error")
        LocalContrastNormalization(kernel_size=3)(rng.normal(size=(2, 4, 4, 1)).astype(np.float32))


def test_gcn_leaves_tf32_alone(rng, tf32_enabled):
    # GCN has no matrix product or convolution (element-wise operations and sums only).
    GlobalContrastNormalization()(rng.normal(size=(2, 4, 4, 3)).astype(np.float32))
    assert tf.config.experimental.tensor_float_32_execution_enabled()


# ---------------------------------------------------------------- LCN
@pytest.mark.parametrize("kernel_size,sigma", [(7, 2.0), (5, 1.0), (1, 1.0)])
def test_lcn_matches_pylearn2_on_random_images(rng, kernel_size, sigma):
    x = rng.normal(size=(4, 12, 10, 3)).astype(np.float32)
    assert_close(LocalContrastNormalization(kernel_size, sigma)(x), lcn_reference(x, kernel_size, sigma))


def test_lcn_matches_pylearn2_on_real_images(mnist_slice, cifar_jpeg_slice):
    svhn_like = np.asarray(GlobalContrastNormalization()(cifar_jpeg_slice[:16]), np.float64)
    assert_close(LocalContrastNormalization()(svhn_like), lcn_reference(svhn_like))
    assert_close(LocalContrastNormalization()(mnist_slice[:16]), lcn_reference(mnist_slice[:16]))


def test_lcn_threshold_on_flat_images():
    y = np.asarray(LocalContrastNormalization()(np.zeros((1, 9, 9, 2), np.float32)))
    np.testing.assert_array_equal(y, 0.0)


def test_lcn_bad_arguments():
    with pytest.raises(ValueError, match="odd"):
        LocalContrastNormalization(kernel_size=4)
    with pytest.raises(ValueError, match="sigma"):
        LocalContrastNormalization(sigma=0)
    with pytest.raises(ValueError, match="rank 4"):
        LocalContrastNormalization()(np.zeros((2, 8, 8), np.float32))


def test_gcn_bad_arguments():
    with pytest.raises(ValueError, match="rank"):
        GlobalContrastNormalization()(np.zeros((5,), np.float32))
    with pytest.raises(ValueError, match="scale"):
        GlobalContrastNormalization(scale=0.0)


# ---------------------------------------------------------------- augmentation
def crop_offsets(inputs, outputs, padding, flips=(False,)):
    """For each output, the (dy, dx, mirrored) with outputs[i] == zero-padded inputs[i] cropped
    at (dy, dx), then mirrored left-right if ``mirrored`` (searched over ``flips``)."""
    h, w = inputs.shape[1:3]
    padded = np.pad(inputs, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    offsets = []
    for image, out in zip(padded, outputs):
        matches = [(dy, dx, mirrored) for dy in range(2 * padding + 1)
                   for dx in range(2 * padding + 1) for mirrored in flips
                   if np.array_equal(image[dy:dy + h, dx:dx + w][:, ::-1] if mirrored
                                     else image[dy:dy + h, dx:dx + w], out)]
        assert matches, "output is not a (mirrored) zero-padded crop of its input"
        offsets.append(matches[0])
    return offsets


def test_random_pad_crop_is_a_seeded_zero_padded_translation(rng):
    x = rng.uniform(1, 2, size=(256, 6, 5, 2)).astype(np.float32)  # no zeros: shifts are unique
    y = np.asarray(RandomPadCrop(2, seed=7)(x, training=True))
    offsets = crop_offsets(x, y, 2)
    assert len(set(offsets)) == 25  # every shift in {0..4}^2 occurs among 256 draws
    np.testing.assert_array_equal(RandomPadCrop(2, seed=7)(x, training=True), y)
    np.testing.assert_array_equal(RandomPadCrop(2, seed=7)(x, training=False), x)
    with pytest.raises(ValueError, match="padding"):
        RandomPadCrop(-1)
    with pytest.raises(ValueError, match="horizontal_flip"):
        RandomPadCrop(2, horizontal_flip="yes")


@pytest.mark.parametrize("padding", [0, 2])
def test_random_pad_crop_with_flip_is_a_crop_then_a_mirror(rng, padding):
    # Distinct values in every row, so a mirrored crop never equals an unmirrored one.
    x = rng.uniform(1, 2, size=(256, 6, 5, 3)).astype(np.float32)
    layer = RandomPadCrop(padding, horizontal_flip=True, seed=7)
    y = np.asarray(layer(x, training=True))
    drawn = crop_offsets(x, y, padding, flips=(False, True))
    assert len(set(drawn)) == 2 * (2 * padding + 1) ** 2  # every shift, mirrored or not
    # The flips are the layer's own draws: transform_images with them reproduces the output.
    offsets = np.array([[dy - padding for dy, _, _ in drawn], [dx - padding for _, dx, _ in drawn]])
    mirrored = np.array([[m] for _, _, m in drawn])
    np.testing.assert_array_equal(
        layer.transform_images(x, {"offsets": offsets.astype(np.int32), "mirrored": mirrored}), y)
    np.testing.assert_array_equal(layer(x, training=False), x)


@pytest.mark.parametrize("fused", [True, False])
def test_pipeline_augmentation_is_seeded_and_varies_between_batches(rng, fused):
    batch = rng.uniform(1, 2, size=(16, 6, 6, 1)).astype(np.float32)
    dataset = tf.data.Dataset.from_tensor_slices((np.tile(batch, (4, 1, 1, 1)), np.arange(64)))

    def run(training=True):
        augment = ([RandomPadCrop(2, horizontal_flip=True, seed=3)] if fused else
                   [RandomPadCrop(2, seed=3), keras.layers.RandomFlip("horizontal", seed=4)])
        return [b for b, _ in make_pipeline(dataset, 16, augmentation=augment, training=training,
                                            shuffle=0).as_numpy_iterator()]

    first, second = run(), run()
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)  # same seeds, same crops and flips
    for a, b in zip(first, first[1:]):
        assert not np.array_equal(a, b)  # same images, new draws for every batch
    for out in run(training=False):
        np.testing.assert_array_equal(out, batch)


def test_cached_pipeline_is_seeded_across_builds_and_epochs(rng):
    images = rng.uniform(1, 2, size=(100, 6, 5, 3)).astype(np.float32)
    dataset = tf.data.Dataset.from_tensor_slices((images, np.arange(100)))
    gcn = GlobalContrastNormalization(scale=55.0)

    def epochs(n=2):
        pipeline = make_pipeline(dataset, 16, [gcn], [RandomPadCrop(2, horizontal_flip=True, seed=5)],
                                 shuffle=100, seed=9, training=True, cache=True)
        return [list(pipeline.as_numpy_iterator()) for _ in range(n)]

    first, second = epochs(), epochs()
    for epoch_a, epoch_b in zip(first, second):
        for (xa, ya), (xb, yb) in zip(epoch_a, epoch_b, strict=True):
            np.testing.assert_array_equal(xa, xb)  # a new pipeline repeats the same batches
            np.testing.assert_array_equal(ya, yb)
    labels = [np.concatenate([y for _, y in epoch]) for epoch in first]
    assert sorted(labels[0]) == list(range(100)) and labels[0].tolist() != labels[1].tolist()
    # Every batch is its examples' preprocessed images, cropped and mirrored.
    (preprocessed, _), = make_pipeline(dataset, 100, [gcn]).as_numpy_iterator()
    for x, y in first[0]:
        crop_offsets(preprocessed[y], x, 2, flips=(False, True))


# ---------------------------------------------------------------- one implementation, three paths
def test_tf_data_layer_and_reloaded_model_agree(rng, tmp_path):
    images = rng.integers(0, 256, (40, 8, 8, 3)).astype(np.uint8)
    gcn = GlobalContrastNormalization(scale=55.0)
    zca = ZCAWhitening(filter_bias=0.1).adapt(np.asarray(gcn(images)))
    lcn = LocalContrastNormalization(5, 1.5)
    layers = [gcn, zca, lcn]

    direct = images
    for layer in layers:
        direct = layer(direct)
    reference = lcn_reference(((gcn_reference(images, scale=55.0).reshape(40, -1) - zca.mean.numpy())
                               @ zca.whitening.numpy()).reshape(images.shape), 5, 1.5)
    assert_close(direct, reference, rtol=1e-4)

    dataset = tf.data.Dataset.from_tensor_slices((images, np.zeros(40, np.int64)))
    piped = np.concatenate([b for b, _ in make_pipeline(dataset, 16, layers).as_numpy_iterator()])
    uncompiled = np.concatenate([b for b, _ in make_pipeline(dataset, 16, layers, jit_compile=False)
                                 .as_numpy_iterator()])

    model = keras.Sequential([keras.Input((8, 8, 3), dtype="uint8"), *layers])
    model.save(tmp_path / "pre.keras")
    reloaded = keras.saving.load_model(tmp_path / "pre.keras")
    assert [type(layer).__name__ for layer in reloaded.layers] == [type(la).__name__ for la in layers]
    # Same ops and weights; only float32 summation order differs with the batch size.
    assert_close(piped, direct)
    assert_close(uncompiled, direct)
    assert_close(reloaded.predict(images, batch_size=40, verbose=0), direct)


@pytest.mark.parametrize("layer", [
    GlobalContrastNormalization(scale=55.0, use_std=True, sqrt_bias=10.0, min_divisor=1e-6),
    ZCAWhitening(filter_bias=0.5, matrix_dtype="float16"),
    LocalContrastNormalization(kernel_size=9, sigma=3.0, threshold=1e-3),
    RandomPadCrop(padding=3, seed=5),
])
def test_config_round_trip(layer):
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer)
    assert restored.get_config() == layer.get_config()
