"""2-D max/average pooling with Caffe's output size and border rules."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from nin_keras.layers import _args


def caffe_pooled_length(length: int | None, pool: int, stride: int) -> int | None:
    """Caffe's pooled length without padding: ``ceil((length - pool) / stride) + 1``."""
    return _args.window_output_length(length, pool, stride, "caffe")


@keras.saving.register_keras_serializable(package="nin_keras")
class CaffePooling2D(keras.layers.Layer):
    """Max or average pooling that matches Caffe's ``POOLING`` layer (no padding).

    Caffe rounds the output size up, ``ceil((n - pool) / stride) + 1`` (so 3/2 pooling takes
    32 → 16 → 8, where Keras's ``"valid"`` gives 15 → 7). The last window may therefore run past
    the bottom/right border; only those two sides are extended. A max window takes the maximum of
    its in-bounds elements; an average window divides by the number of its in-bounds elements
    (Caffe clips the window to the image before counting when there is no padding).

    Args:
        pool_size: window size (int or pair).
        strides: window step (int or pair); defaults to ``pool_size``.
        mode: ``"max"`` or ``"average"``.
        data_format: ``"channels_last"`` (default from the Keras config) or ``"channels_first"``.

    Input shape: 4-D ``(batch, rows, cols, channels)`` (or channels first).
    Output shape: 4-D ``(batch, ceil((rows - pool) / stride) + 1, ..., channels)``.

    Example:
    >>> print(CaffePooling2D(3, 2, mode="average")(keras.ops.ones((1, 32, 32, 8))).shape)
    (1, 16, 16, 8)
    """

    def __init__(
        self,
        pool_size: int | Sequence[int],
        strides: int | Sequence[int] | None = None,
        mode: str = "max",
        data_format: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.pool_size = _args.int_tuple(pool_size, 2, "pool_size")
        self.strides = self.pool_size if strides is None else _args.int_tuple(strides, 2, "strides")
        if any(s > k for s, k in zip(self.strides, self.pool_size)):
            # Caffe would then place whole windows outside the image (empty max, zero divisor).
            raise ValueError(f"`strides` {self.strides} must not exceed `pool_size` {self.pool_size}.")
        self.mode = _args.choice(mode, ("max", "average"), "mode")
        self.data_format = _args.data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def call(self, inputs):
        if self._same_is_caffe(inputs.shape):
            # Keras "same" pooling then pads only the bottom/right and leaves the padding out of
            # the max and of the average's count: Caffe's rule, without the pad/divide ops below.
            pool = ops.max_pool if self.mode == "max" else ops.average_pool
            return pool(inputs, self.pool_size, self.strides, "same", self.data_format)
        # Padding the bottom/right by stride - 1 makes Keras's "valid" pooling produce exactly
        # Caffe's ceil-rounded size, whatever the (possibly unknown) input size.
        spatial = [(0, s - 1) for s in self.strides]
        pad = [(0, 0), (0, 0), *spatial] if self.data_format == "channels_first" else [(0, 0), *spatial, (0, 0)]
        if self.mode == "max":
            padded = ops.pad(inputs, pad, constant_values=float("-inf"))
            return ops.max_pool(padded, self.pool_size, self.strides, "valid", self.data_format)
        window_sums = ops.average_pool(ops.pad(inputs, pad), self.pool_size, self.strides, "valid", self.data_format)
        # The same pooling of an all-ones image is the in-bounds fraction of each window.
        ones = ops.ones_like(inputs[:1, :1] if self.data_format == "channels_first" else inputs[:1, ..., :1])
        in_bounds = ops.average_pool(ops.pad(ones, pad), self.pool_size, self.strides, "valid", self.data_format)
        return ops.divide(window_sums, in_bounds)

    def _same_is_caffe(self, shape) -> bool:
        """Whether "same" pooling of this static ``shape`` has Caffe's size and borders."""
        spatial = [shape[axis] for axis in _args.spatial_axes(self.data_format)]
        for n, k, s in zip(spatial, self.pool_size, self.strides):
            if n is None:
                return False
            out = -(-n // s)
            # TF puts pad_total // 2 rows before the image, so at most one padded row/column.
            if caffe_pooled_length(n, k, s) != out or (out - 1) * s + k - n > 1:
                return False
        return True

    def compute_output_shape(self, input_shape):
        return _args.window_output_shape(
            input_shape, self.pool_size, self.strides, "caffe", self.data_format, "CaffePooling2D"
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "pool_size": self.pool_size,
                "strides": self.strides,
                "mode": self.mode,
                "data_format": self.data_format,
            }
        )
        return config
