"""Training-time augmentation for CIFAR: random translation by zero-pad-and-crop."""

from __future__ import annotations

import keras
from keras import ops

from nin_keras.layers._args import check_rank


@keras.saving.register_keras_serializable(package="nin_keras")
class RandomPadCrop(keras.layers.Layer):
    """Randomly translate each image by up to ``padding`` pixels, filling with zeros.

    Each image is zero-padded by ``padding`` on every side and a window of the original size is
    cut at an offset drawn uniformly from ``{0, ..., 2 * padding}`` in each direction, independently
    per image. This is the "pad 4, random 32x32 crop" augmentation of the NIN/Maxout CIFAR
    recipes; apply it after GCN/ZCA so the fill value is the whitened data's mean (0). At
    inference (``training=False``) the layer is the identity. Use it with
    ``keras.layers.RandomFlip("horizontal")`` for the full CIFAR augmentation.

    Args:
        padding: Maximum shift in pixels (>= 0).
        seed: Integer seed for reproducible crops.
        **kwargs: Base ``keras.layers.Layer`` arguments.

    Input shape:
        ``(batch, height, width, channels)`` with known height, width and channels.

    Output shape:
        Same as the input.

    Example:
        >>> augment = [RandomPadCrop(4, seed=1), keras.layers.RandomFlip("horizontal", seed=2)]
        >>> for layer in augment:
        ...     images = layer(images, training=True)
    """

    def __init__(self, padding: int = 4, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if int(padding) != padding or padding < 0:
            raise ValueError(f"padding must be a non-negative integer, got {padding}")
        self.padding = int(padding)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        check_rank(input_shape, 4, self.name)
        if None in tuple(input_shape[1:]):
            raise ValueError(f"{self.name} needs known height, width and channels, got `input_shape`="
                             f"{tuple(input_shape)}.")

    def call(self, inputs, training=True):
        if not training or self.padding == 0:
            return inputs
        height, width, channels = inputs.shape[1], inputs.shape[2], inputs.shape[3]
        p = self.padding
        padded_h, padded_w = height + 2 * p, width + 2 * p
        batch = ops.shape(inputs)[0]
        # Flatten the padded batch to rows of pixels and gather every crop with one ``take``
        # (much faster than per-axis ``take_along_axis``): pixel (i, j) of crop b is row
        # b * padded_h * padded_w + (dy_b + i) * padded_w + (dx_b + j).
        pixels = ops.reshape(ops.pad(inputs, ((0, 0), (p, p), (p, p), (0, 0))), (-1, channels))
        offsets = keras.random.randint((2, batch), 0, 2 * p + 1, seed=self.seed_generator)
        corner = ops.arange(batch) * (padded_h * padded_w) + offsets[0] * padded_w + offsets[1]
        index = (corner[:, None, None] + (ops.arange(height) * padded_w)[None, :, None]
                 + ops.arange(width)[None, None, :])
        crops = ops.take(pixels, ops.reshape(index, (-1,)), axis=0)
        return ops.reshape(crops, (batch, height, width, channels))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(padding=self.padding, seed=self.seed)
        return config
