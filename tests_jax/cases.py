"""What the TensorFlow and JAX backends must compute alike, built the same way on both.

``tf_reference.py`` (run with TensorFlow, the main ``.venv``) saves the inputs and TensorFlow's
outputs of every case to a ``.npz``; ``test_jax_backend.py`` (run in ``.venv-jax``, no TensorFlow)
rebuilds each case, feeds it the saved inputs and compares. Weights are drawn from a seeded NumPy
generator in the order of ``layer.weights``, which both backends share.
"""

from __future__ import annotations

from typing import Callable

import keras
import numpy as np

from nin_keras import layers as nl
from nin_keras import zoo

# Every preset shipped in zoo/weights/ (the weights index's list): loading one reads only Keras weights and JSON.
PRESETS = tuple(zoo.list_models(pretrained=True))
IMAGES_PER_PRESET = 8
TOLERANCE = 1e-4  # max |TensorFlow - JAX| of any output value

# name -> (layer factory, input shape without batch)
LAYERS: dict[str, tuple[Callable[[], keras.layers.Layer], tuple[int, ...]]] = {
    "mlpconv": (lambda: nl.MLPConv([8, 6, 5], 3), (9, 9, 3)),
    "mlpconv_batch_norm": (lambda: nl.MLPConv([6, 4], 3, strides=2, batch_norm=True), (9, 9, 3)),
    "maxout": (lambda: nl.Maxout(5, pieces=3), (7,)),
    "maxout_conv2d": (lambda: nl.MaxoutConv2D(4, pieces=2, kernel_size=3), (6, 5, 3)),
    "gap_head": (lambda: nl.GlobalAveragePoolingHead(), (5, 4, 7)),
    "caffe_max_pooling": (lambda: nl.CaffePooling2D(3, 2, mode="max"), (8, 9, 3)),
    "caffe_average_pooling": (lambda: nl.CaffePooling2D(3, 2, mode="average"), (8, 9, 3)),
    "gcn": (lambda: nl.GlobalContrastNormalization(scale=55.0, sqrt_bias=10.0, use_std=True), (6, 6, 3)),
    "zca": (lambda: nl.ZCAWhitening(filter_bias=0.1), (4, 4, 3)),
    "lcn": (lambda: nl.LocalContrastNormalization(kernel_size=5, sigma=1.5), (10, 10, 1)),
}


def layer_inputs(name: str) -> np.ndarray:
    """The input batch of layer case ``name`` (seeded, non-negative like images)."""
    shape = LAYERS[name][1]
    rng = np.random.default_rng(sorted(LAYERS).index(name))
    return np.abs(rng.normal(size=(3, *shape)) * 20).astype("float32")


def build_layer(name: str) -> keras.layers.Layer:
    """Layer case ``name``, built, with seeded weights (ZCA: adapted on seeded data)."""
    factory, shape = LAYERS[name]
    layer = factory()
    rng = np.random.default_rng(100 + sorted(LAYERS).index(name))
    if isinstance(layer, nl.ZCAWhitening):
        layer.adapt(rng.normal(size=(200, *shape)).astype("float32") * 20)
        return layer
    layer.build((None, *shape))
    for weight in layer.weights:
        value = rng.normal(size=weight.shape) * 0.3
        if "variance" in weight.path:
            value = np.abs(value) + 0.5
        weight.assign(value.astype(weight.dtype))
    return layer


def preset_images(index: int, shape: tuple[int, ...]) -> np.ndarray:
    """Raw uint8 images for the preset ``PRESETS[index]`` of input ``shape`` (H, W, C)."""
    rng = np.random.default_rng(1000 + index)
    return rng.integers(0, 256, size=(IMAGES_PER_PRESET, *shape), dtype=np.uint8)
