"""The recipe search's augmentation ingredients against NumPy: MixUp/CutMix (timm's ``Mixup``),
random erasing (cutout), RandAugment on raw pixels, their order in the pipeline, and their recipe checks."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from nin_keras.data.pipeline import make_pipeline  # noqa: E402
from nin_keras.layers import MixUpCutMix  # noqa: E402
from nin_keras.train.recipes import Recipe, load_recipe  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import ablation  # noqa: E402


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _numpy(transformation):
    return {k: keras.ops.convert_to_numpy(v) for k, v in transformation.items()}


def timm_box(lam, height, width, cy, cx):
    """timm.data.mixup.rand_bbox with a given centre, and the area-corrected lambda."""
    cut_rat = np.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * cut_rat), int(width * cut_rat)
    yl, yh = np.clip(cy - cut_h // 2, 0, height), np.clip(cy + cut_h // 2, 0, height)
    xl, xh = np.clip(cx - cut_w // 2, 0, width), np.clip(cx + cut_w // 2, 0, width)
    return (yl, yh, xl, xh), 1.0 - (yh - yl) * (xh - xl) / float(height * width)


@pytest.fixture
def batch(rng):
    images = rng.normal(size=(5, 8, 10, 3)).astype(np.float32)
    targets = np.eye(4, dtype=np.float32)[[0, 1, 2, 3, 1]] * 0.9 + 0.025  # label-smoothed, soft
    return images, targets


def test_mixup_is_a_blend_with_the_reversed_batch(batch):
    images, targets = batch
    layer = MixUpCutMix(mixup_alpha=0.2)
    transformation = {"lam": np.float32(0.3), "cutmix": np.bool_(False), "center": np.array([2, 3], np.int32)}
    mixed, soft = layer.mix(images, targets, transformation)
    np.testing.assert_allclose(mixed, 0.3 * images + 0.7 * images[::-1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(soft, 0.3 * targets + 0.7 * targets[::-1], rtol=1e-6)
    np.testing.assert_allclose(np.sum(soft, -1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("lam, center", [(0.6, (4, 5)), (0.3, (1, 8)), (0.9, (7, 0))])
def test_cutmix_pastes_timms_box_and_corrects_lambda_to_its_area(batch, lam, center):
    images, targets = batch
    layer = MixUpCutMix(cutmix_alpha=1.0)
    transformation = {"lam": np.float32(lam), "cutmix": np.bool_(True), "center": np.array(center, np.int32)}
    mixed, soft = (keras.ops.convert_to_numpy(t) for t in layer.mix(images, targets, transformation))
    (yl, yh, xl, xh), corrected = timm_box(lam, 8, 10, *center)
    expected = images.copy()
    expected[:, yl:yh, xl:xh] = images[::-1, yl:yh, xl:xh]
    np.testing.assert_array_equal(mixed, expected)
    np.testing.assert_allclose(soft, corrected * targets + (1 - corrected) * targets[::-1], rtol=1e-6)
    if center != (4, 5):  # a box clipped by the border leaves more of the image than lam said
        assert corrected > lam


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixing_under_a_mixed_policy_computes_in_its_dtype(batch, policy):
    images, targets = batch
    transformation = {"lam": np.float32(0.3), "cutmix": np.bool_(False), "center": np.array([2, 3], np.int32)}
    layer = MixUpCutMix(mixup_alpha=0.2, dtype=policy)
    mixed, soft = layer.mix(keras.ops.cast(images, layer.compute_dtype), targets, transformation)
    assert keras.backend.standardize_dtype(mixed.dtype) == layer.compute_dtype
    np.testing.assert_allclose(keras.ops.convert_to_numpy(keras.ops.cast(mixed, "float32")),
                               0.3 * images + 0.7 * images[::-1], atol=0.05)
    np.testing.assert_allclose(soft, 0.3 * targets + 0.7 * targets[::-1], rtol=1e-6)  # targets keep float32


def test_mixing_is_seeded_identity_at_inference_and_honours_its_probabilities(batch):
    images, targets = batch
    draws = [_numpy(MixUpCutMix(0.8, 1.0, seed=5).get_random_transformation(images)) for _ in range(2)]
    for key in draws[0]:
        np.testing.assert_array_equal(draws[0][key], draws[1][key])
    for training, layer in [(False, MixUpCutMix(0.8, 1.0, seed=1)), (True, MixUpCutMix(0.8, 1.0, prob=0.0, seed=1))]:
        out, soft = layer([images, targets], training=training)
        np.testing.assert_array_equal(out, images)
        np.testing.assert_array_equal(soft, targets)
    layer = MixUpCutMix(0.8, 1.0, prob=0.5, switch_prob=0.25, seed=2)
    drawn = [_numpy(layer.get_random_transformation(images)) for _ in range(400)]
    mixed = [d for d in drawn if d["lam"] < 1]
    assert 0.4 < len(mixed) / 400 < 0.6
    assert 0.15 < np.mean([d["cutmix"] for d in mixed]) < 0.35
    assert not any(d["cutmix"] for d in drawn if d["lam"] == 1)  # an unmixed batch is no CutMix
    only_cutmix = MixUpCutMix(cutmix_alpha=1.0, seed=3)
    assert all(_numpy(only_cutmix.get_random_transformation(images))["cutmix"] for _ in range(20))


def test_mixing_config_round_trip_and_bad_values_named():
    layer = MixUpCutMix(0.2, 1.0, prob=0.8, switch_prob=0.3, seed=4)
    again = keras.layers.deserialize(keras.layers.serialize(layer))
    assert again.get_config() == layer.get_config()
    for kwargs, name in [({"mixup_alpha": -0.1}, "mixup_alpha"), ({"cutmix_alpha": float("nan")}, "cutmix_alpha"),
                         ({"prob": 1.5}, "prob"), ({"switch_prob": -0.01}, "switch_prob"),
                         ({"prob": True}, "prob")]:
        with pytest.raises(ValueError, match=name):
            MixUpCutMix(**kwargs)


@pytest.mark.parametrize("block, name", [
    ({"mixup_alpha": -1.0}, "mixing.mixup_alpha"), ({"cutmix_alpha": "1"}, "mixing.cutmix_alpha"),
    ({"prob": 1.01}, "mixing.prob"), ({"switch_prob": -0.5}, "mixing.switch_prob"),
    ({"alpha": 1.0}, "'mixing'"), ([0.2], "'mixing'")])
def test_the_recipe_refuses_bad_mixing_by_name(block, name):
    recipe = {**load_recipe("nin_cifar10_modern"), "mixing": block}
    with pytest.raises(ValueError, match=name):
        Recipe.parse(recipe)


def test_the_recipe_types_mixing_and_raw_augmentation():
    recipe = Recipe.parse({**load_recipe("nin_cifar10_modern"), "mixing": {"cutmix_alpha": 1.0},
                           "raw_augmentation": [{"class_name": "RandAugment", "config": {}}]})
    assert (recipe.mixing.mixup_alpha, recipe.mixing.cutmix_alpha, recipe.mixing.prob, recipe.mixing.switch_prob) \
        == (0.0, 1.0, 1.0, 0.5)
    assert keras.layers.deserialize(recipe.mixing.layer_config()).get_config()["cutmix_alpha"] == 1.0
    assert recipe.raw_augmentation == ({"class_name": "RandAugment", "config": {}},)
    assert Recipe.parse(load_recipe("nin_cifar10_modern")).mixing is None


@pytest.mark.parametrize("cutout, side", [("CUTOUT", (8, 6)), ("CUTOUT_SMALL", (4, 3))])
def test_cutout_erases_one_rectangle_of_the_stated_sides_with_zeros(rng, cutout, side):
    # The ablation's cutouts: keras.layers.RandomErasing on every image, half (a quarter) of each
    # side, filled with 0.
    images = rng.uniform(1, 2, size=(64, 16, 12, 3)).astype(np.float32)  # no zeros of their own
    config = getattr(ablation, cutout)
    config = {**config, "config": {**config["config"], "seed": 3}}
    layer = keras.layers.deserialize(config)
    out = keras.ops.convert_to_numpy(layer(images, training=True))
    corners = set()
    for before, after in zip(images, out):
        erased = np.all(after == 0, axis=-1)
        np.testing.assert_array_equal(after[~erased], before[~erased])  # untouched elsewhere
        rows, columns = np.nonzero(erased)
        (y0, y1), (x0, x1) = (rows.min(), rows.max() + 1), (columns.min(), columns.max() + 1)
        assert (y1 - y0, x1 - x0) == side and erased.sum() == side[0] * side[1]  # one full rectangle
        corners.add((y0, x0))
    assert len(corners) > 10  # placed at random
    np.testing.assert_array_equal(keras.layers.deserialize(config)(images, training=True), out)
    np.testing.assert_array_equal(layer(images, training=False), images)
    # Keras's trap: a single ``factor`` p draws each image's probability from [0, p], so 1.0
    # erases about half the images, not all of them.
    half = keras.layers.RandomErasing(factor=1.0, scale=(0.25, 0.25), fill_value=0.0, seed=3)
    erased = np.all(keras.ops.convert_to_numpy(half(images, training=True)) == 0, axis=-1).any(axis=(1, 2))
    assert 0.25 < erased.mean() < 0.75


def test_rand_augment_is_seeded_and_stays_in_the_pixel_range(rng):
    images = rng.integers(0, 256, size=(16, 12, 12, 3)).astype(np.float32)

    def run(seed):
        layer = keras.layers.RandAugment(value_range=(0, 255), num_ops=2, factor=0.5, seed=seed)
        return [keras.ops.convert_to_numpy(layer(images, training=True)) for _ in range(3)]

    first, again, other = run(1), run(1), run(2)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))
    assert not np.array_equal(first[0], images)
    for out in first + other:
        assert out.min() >= 0 and out.max() <= 255


def test_rand_augment_runs_in_the_pipeline_seeded(rng):
    # Its transformation holds a None (AutoContrast draws nothing) and image warps XLA cannot compile.
    images = rng.integers(0, 256, size=(16, 12, 12, 3)).astype(np.uint8)
    dataset = tf.data.Dataset.from_tensor_slices((images, np.arange(16)))

    def run():
        augment = [keras.layers.RandAugment(seed=4)]
        return [b for b, _ in make_pipeline(dataset, 8, raw_augmentation=augment, training=True,
                                            shuffle=0).as_numpy_iterator()]

    first, again = run(), run()
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(np.concatenate(first), images.astype(np.float32))
    assert all(0 <= a.min() and a.max() <= 255 for a in first)


def test_raw_augmentation_runs_on_raw_pixels_before_the_preprocessing(rng):
    images = rng.integers(0, 256, size=(8, 4, 4, 1)).astype(np.uint8)
    dataset = tf.data.Dataset.from_tensor_slices((images, np.arange(8)))
    clip = keras.layers.Lambda(lambda x: keras.ops.minimum(x, 100.0))  # only raw pixels exceed 100
    scale = [keras.layers.Rescaling(1 / 255)]

    def run(training):
        return next(make_pipeline(dataset, 8, scale, raw_augmentation=[clip], training=training,
                                  shuffle=0).as_numpy_iterator())[0]

    np.testing.assert_allclose(run(True), np.minimum(images, 100) / 255, rtol=1e-6)
    np.testing.assert_allclose(run(False), images / 255, rtol=1e-6)
    with pytest.raises(ValueError, match="raw_augmentation"):
        make_pipeline(dataset, 8, scale, raw_augmentation=[clip], training=True, cache=True)
