"""Stochastic pooling (Zeiler & Fergus 2013): sample one activation per window by its value."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from nin_keras.layers import _args


@keras.saving.register_keras_serializable(package="nin_keras")
class StochasticPooling2D(keras.layers.Layer):
    """2-D pooling that picks an activation at random, with probability proportional to its value.

    In each window the activations ``a_i`` (meant to be non-negative, e.g. after a ReLU; negative
    values get probability 0) define ``p_i = a_i / Σ_j a_j``.

    - Training: the output is one ``a_i`` drawn with probability ``p_i``, so every output is a
      value present in its window (a window of zeros gives 0).
    - Inference: the probability-weighted average ``Σ_i p_i a_i`` (0 for an all-zero window).

    Args:
        pool_size: window size (int or pair).
        strides: window step (int or pair); defaults to ``pool_size``.
        padding: ``"valid"`` or ``"same"`` (padding is zeros, which are never sampled).
        seed: seed of the layer's ``keras.random.SeedGenerator``: the same seed gives the same
            sequence of samples.
        data_format: ``"channels_last"`` (default from the Keras config) or ``"channels_first"``.

    Input shape: 4-D ``(batch, rows, cols, channels)`` (or channels first).
    Output shape: 4-D ``(batch, pooled_rows, pooled_cols, channels)`` (or channels first).

    Example:
    >>> print(StochasticPooling2D(3, 2, seed=0)(keras.ops.ones((1, 9, 9, 4)), training=True).shape)
    (1, 4, 4, 4)
    """

    def __init__(
        self,
        pool_size: int | Sequence[int] = 2,
        strides: int | Sequence[int] | None = None,
        padding: str = "valid",
        seed: int | None = None,
        data_format: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.pool_size = _args.int_tuple(pool_size, 2, "pool_size")
        self.strides = self.pool_size if strides is None else _args.int_tuple(strides, 2, "strides")
        self.padding = _args.choice(padding, ("valid", "same"), "padding")
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.data_format = _args.data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def call(self, inputs, training=None):
        x = ops.transpose(inputs, (0, 2, 3, 1)) if self.data_format == "channels_first" else inputs
        channels = x.shape[-1]
        patches = ops.image.extract_patches(
            x, self.pool_size, self.strides, padding=self.padding, data_format="channels_last"
        )
        # extract_patches orders each patch's values (row, col, channel): split window and channel.
        patches = ops.reshape(patches, (*ops.shape(patches)[:3], -1, channels))
        weights = ops.relu(patches)
        cumulative = ops.cumsum(weights, axis=3)
        total = cumulative[:, :, :, -1, :]  # the cumsum's own total, so u * total stays inside it
        if training:
            # Inverse-CDF sampling: the first index whose cumulative weight exceeds u * total.
            u = keras.random.uniform(ops.shape(total), seed=self.seed_generator, dtype=total.dtype)
            passed = ops.cast(cumulative <= ops.expand_dims(u * total, 3), "int32")
            index = ops.minimum(ops.sum(passed, axis=3), ops.shape(patches)[3] - 1)
            pooled = ops.squeeze(ops.take_along_axis(patches, ops.expand_dims(index, 3), axis=3), 3)
        else:
            safe_total = ops.where(total > 0, total, ops.ones_like(total))
            pooled = ops.where(total > 0, ops.sum(weights * patches, axis=3) / safe_total, ops.zeros_like(total))
        return ops.transpose(pooled, (0, 3, 1, 2)) if self.data_format == "channels_first" else pooled

    def compute_output_shape(self, input_shape):
        return _args.window_output_shape(
            input_shape, self.pool_size, self.strides, self.padding, self.data_format, "StochasticPooling2D"
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "pool_size": self.pool_size,
                "strides": self.strides,
                "padding": self.padding,
                "seed": self.seed,
                "data_format": self.data_format,
            }
        )
        return config
