"""Maxout units (Goodfellow et al. 2013): each unit is the maximum of ``pieces`` linear functions."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from nin_keras.layers import _args
from nin_keras.layers._dense_base import DenseStyleLayer


def max_over_pieces(z, units: int, pieces: int, axis: int):
    """Max over groups of ``pieces`` consecutive entries along ``axis`` (unit-major layout)."""
    axis = axis % len(z.shape)
    shape = ops.shape(z)
    grouped = ops.reshape(z, (*shape[:axis], units, pieces, *shape[axis + 1 :]))
    return ops.max(grouped, axis=axis + 1)


class _MaxoutBase(DenseStyleLayer):
    """Shared ``units``/``pieces``, config and ``unit_pieces`` of the dense and convolutional maxout layers."""

    _units_name = "units"  # the constructor argument naming the number of units

    def __init__(self, units: int, pieces: int, **kwargs):
        super().__init__(**kwargs)
        self.units = _args.positive_int(units, self._units_name)
        self.pieces = _args.positive_int(pieces, "pieces")

    def unit_pieces(self, unit: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The kernel ``(..., pieces)`` and bias ``(pieces,)`` (None without bias) of one unit."""
        if isinstance(unit, bool) or not isinstance(unit, int) or not 0 <= unit < self.units:
            raise ValueError(f"`unit` must be an int in [0, {self.units}), got {unit!r}.")
        columns = slice(unit * self.pieces, (unit + 1) * self.pieces)
        kernel = keras.ops.convert_to_numpy(self.kernel)[..., columns]
        bias = None if self.bias is None else keras.ops.convert_to_numpy(self.bias)[columns]
        return kernel, bias

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                self._units_name: self.units,
                "pieces": self.pieces,
                "use_bias": self.use_bias,
                **self.weight_arguments_config(),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="nin_keras")
class Maxout(_MaxoutBase):
    """Dense maxout layer: ``y_u = max_p (x · W[:, u, p] + b[u, p])``.

    Args:
        units: number of maxout units (outputs).
        pieces: linear pieces per unit (k in the paper); 1 makes a plain dense layer.
        use_bias: whether the pieces have biases.
        kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer,
        kernel_constraint, bias_constraint: as in ``keras.layers.Dense`` (a
        ``keras.constraints.MaxNorm(axis=0)`` gives pylearn2's per-piece column norm limit).

    Input shape: ``(batch, ..., features)``, rank at least 2.
    Output shape: ``(batch, ..., units)``.

    Weight layout: the ``units * pieces`` linear pieces are the last axis of ``kernel`` and ``bias``,
    unit-major: column ``u * pieces + p`` is piece ``p`` of unit ``u``; ``unit_pieces(u)`` returns
    one unit's pieces. The kernel has shape ``(features, units * pieces)``.

    Example:
    >>> print(Maxout(240, pieces=5)(keras.ops.zeros((2, 784))).shape)
    (2, 240)
    """

    def __init__(self, units: int, pieces: int, **kwargs):
        super().__init__(units, pieces, **kwargs)
        self.input_spec = keras.layers.InputSpec(min_ndim=2)

    def build(self, input_shape):
        self.build_on_features(input_shape, self.units * self.pieces)

    def call(self, inputs):
        z = ops.matmul(inputs, self.kernel)
        if self.bias is not None:
            z = ops.add(z, self.bias)
        return max_over_pieces(z, self.units, self.pieces, axis=-1)

    def compute_output_shape(self, input_shape):
        return self.features_output_shape(input_shape, self.units)


@keras.saving.register_keras_serializable(package="nin_keras")
class MaxoutConv2D(_MaxoutBase):
    """Convolutional maxout layer: ``filters`` feature maps, each the max over ``pieces`` convolutions.

    Args:
        filters: number of output feature maps (maxout units).
        pieces: linear pieces (convolutions) per feature map.
        kernel_size: convolution window (int or pair).
        strides: convolution step (int or pair).
        padding: ``"valid"`` or ``"same"``.
        data_format: ``"channels_last"`` (default from the Keras config) or ``"channels_first"``.
        use_bias, initializers, regularizers, constraints: as in ``keras.layers.Conv2D``.

    Input shape: 4-D ``(batch, rows, cols, channels)`` (or channels first).
    Output shape: 4-D ``(batch, new_rows, new_cols, filters)`` (or channels first).

    Weight layout: the ``filters * pieces`` linear pieces are the last axis of ``kernel`` and ``bias``,
    filter-major: column ``u * pieces + p`` is piece ``p`` of unit ``u``; ``unit_pieces(u)`` returns
    one unit's pieces. The kernel has shape
    ``(kh, kw, in_channels, filters * pieces)``.

    Example:
    >>> print(MaxoutConv2D(96, pieces=2, kernel_size=8, padding="same")(keras.ops.zeros((1, 32, 32, 3))).shape)
    (1, 32, 32, 96)
    """

    _units_name = "filters"

    def __init__(
        self,
        filters: int,
        pieces: int,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] = 1,
        padding: str = "valid",
        data_format: str | None = None,
        **kwargs,
    ):
        super().__init__(filters, pieces, **kwargs)
        self.kernel_size = _args.int_tuple(kernel_size, 2, "kernel_size")
        self.strides = _args.int_tuple(strides, 2, "strides")
        self.padding = _args.choice(padding, ("same", "valid"), "padding")
        self.data_format = _args.data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    @property
    def filters(self) -> int:
        return self.units

    def build(self, input_shape):
        _args.check_rank(input_shape, 4, "MaxoutConv2D")
        axis = _args.channel_axis(self.data_format, 4)
        channels = _args.known_dim(input_shape[axis], "input_shape")
        self.add_kernel_and_bias((*self.kernel_size, channels), self.units * self.pieces)
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={axis: channels})

    def call(self, inputs):
        z = ops.conv(inputs, self.kernel, self.strides, self.padding, data_format=self.data_format)
        axis = _args.channel_axis(self.data_format, 4)
        if self.bias is not None:
            z = _args.add_channel_bias(z, self.bias, self.data_format)
        return max_over_pieces(z, self.units, self.pieces, axis=axis)

    def compute_output_shape(self, input_shape):
        return _args.window_output_shape(
            input_shape, self.kernel_size, self.strides, self.padding, self.data_format, "MaxoutConv2D",
            channels=self.units,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "padding": self.padding,
                "data_format": self.data_format,
            }
        )
        return config

