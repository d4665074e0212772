"""Training-time augmentation for CIFAR: random translation by zero-pad-and-crop, and mirroring."""

from __future__ import annotations

import keras
from keras import ops

from nin_keras.layers._args import check_rank


@keras.saving.register_keras_serializable(package="nin_keras")
class RandomPadCrop(keras.layers.Layer):
    """Randomly translate each image by up to ``padding`` pixels, filling with zeros, and
    optionally mirror it left-right.

    Each image is zero-padded by ``padding`` on every side and a window of the original size is
    cut at an offset drawn uniformly from ``{0, ..., 2 * padding}`` in each direction, independently
    per image; with ``horizontal_flip``, the window is then mirrored left-right with probability
    1/2. This is the "pad 4, random 32x32 crop, random horizontal flip" augmentation of the
    NIN/Maxout CIFAR recipes; apply it after GCN/ZCA so the fill value is the whitened data's mean
    (0). Crop and flip are one gather of pixels, several times faster than this layer followed by
    ``keras.layers.RandomFlip("horizontal")``. At inference (``training=False``) the layer is the
    identity.

    Args:
        padding: Maximum shift in pixels (>= 0).
        horizontal_flip: Also mirror a random half of the images left-right.
        seed: Integer seed for reproducible crops and flips.
        **kwargs: Base ``keras.layers.Layer`` arguments.

    Input shape:
        ``(batch, height, width, channels)`` with known height, width and channels.

    Output shape:
        Same as the input.

    Example:
        >>> augment = RandomPadCrop(4, horizontal_flip=True, seed=1)
        >>> images = augment(images, training=True)
    """

    def __init__(self, padding: int = 4, horizontal_flip: bool = False, seed: int | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        if int(padding) != padding or padding < 0:
            raise ValueError(f"padding must be a non-negative integer, got {padding}")
        if not isinstance(horizontal_flip, bool):
            raise ValueError(f"horizontal_flip must be a bool, got {horizontal_flip!r}")
        self.padding = int(padding)
        self.horizontal_flip = horizontal_flip
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        check_rank(input_shape, 4, self.name)
        if None in tuple(input_shape[1:]):
            raise ValueError(f"{self.name} needs known height, width and channels, got `input_shape`="
                             f"{tuple(input_shape)}.")

    def get_random_transformation(self, images, training=True) -> dict | None:
        """Draw this batch's shifts (and flips): ``{"offsets": (2, batch) int32 in
        [-padding, padding], "mirrored": (batch, 1) bool}``, or ``None`` when not ``training``.

        Drawing is separate from ``transform_images`` (the Keras image-layer protocol) so that
        ``make_pipeline`` can draw in order from the seed generator and transform in parallel.
        """
        if not training:
            return None
        batch = ops.shape(images)[0]
        p = self.padding
        offsets = keras.random.randint((2, batch), -p, p + 1, seed=self.seed_generator)
        mirrored = (keras.random.randint((batch, 1), 0, 2, seed=self.seed_generator) == 1
                    if self.horizontal_flip else ops.zeros((batch, 1), "bool"))
        return {"offsets": offsets, "mirrored": mirrored}

    def transform_images(self, images, transformation, training=True):
        """Apply the crops and flips of ``get_random_transformation`` (identity for ``None``)."""
        if not training or transformation is None:
            return images
        height, width, channels = images.shape[1], images.shape[2], images.shape[3]
        batch = ops.shape(images)[0]
        offsets, mirrored = transformation["offsets"], transformation["mirrored"]
        rows = ops.arange(height)[None, :] + offsets[0][:, None]
        columns = ops.arange(width)[None, :]
        columns = ops.where(mirrored, width - 1 - columns, columns) + offsets[1][:, None]
        # One ``take`` gathers every output pixel from the flattened batch (much faster than
        # padding and per-axis ``take_along_axis``): pixel (i, j) of crop b is input pixel
        # (b, i + dy_b, column_b(j) + dx_b), where column_b(j) is j, or width - 1 - j when b is
        # mirrored; pixels that fall outside the image read an appended zero pixel instead.
        inside = (((rows >= 0) & (rows < height))[:, :, None]
                  & ((columns >= 0) & (columns < width))[:, None, :])
        index = ((ops.arange(batch) * (height * width))[:, None, None] + rows[:, :, None] * width
                 + columns[:, None, :])
        index = ops.where(inside, index, batch * height * width)
        pixels = ops.concatenate([ops.reshape(images, (-1, channels)),
                                  ops.zeros((1, channels), images.dtype)], axis=0)
        crops = ops.take(pixels, ops.reshape(index, (-1,)), axis=0)
        return ops.reshape(crops, (batch, height, width, channels))

    def call(self, inputs, training=True):
        if self.padding == 0 and not self.horizontal_flip:
            return inputs
        return self.transform_images(inputs, self.get_random_transformation(inputs, training),
                                     training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(padding=self.padding, horizontal_flip=self.horizontal_flip, seed=self.seed)
        return config
