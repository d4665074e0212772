"""The linear part shared by ``MLPConv`` and ``MaxoutMLPConv``: a k×k convolution, then 1×1
convolutions, each with its bias or a batch normalization.

What follows each convolution (ReLU for NIN, the max over maxout pieces for MIN) is the
subclass's; so are the number of channels a convolution outputs (``_conv_channels``) and the
number the next one takes (``filters[i]``).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from nin_keras.layers import _args
from nin_keras.layers.batch_norm import FusedBatchNormalization


class ConvStackLayer(keras.layers.Layer):
    """Convolution ``i`` maps ``filters[i-1]`` channels to ``_conv_channels(i)``; weights
    ``[kernel_0, bias_0, kernel_1, bias_1, ...]`` (no biases with ``batch_norm``: each
    normalization's beta replaces one), then the normalizations' variables."""

    def __init__(
        self,
        filters: Sequence[int],
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] = 1,
        padding: str = "same",
        batch_norm: bool = False,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        data_format: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(filters, int) or not isinstance(filters, Sequence) or len(filters) == 0:
            raise ValueError(f"`filters` must be a non-empty sequence of positive ints, got {filters!r}.")
        self.filters = tuple(_args.positive_int(f, "filters") for f in filters)
        self.kernel_size = _args.int_tuple(kernel_size, 2, "kernel_size")
        self.strides = _args.int_tuple(strides, 2, "strides")
        self.padding = _args.choice(padding, ("same", "valid"), "padding")
        self.batch_norm = bool(batch_norm)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.data_format = _args.data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def _conv_channels(self, i: int) -> int:
        """Output channels of convolution ``i`` (before whatever the subclass applies after it)."""
        return self.filters[i]

    def build(self, input_shape):
        layer = type(self).__name__
        _args.check_rank(input_shape, 4, layer)
        axis = _args.channel_axis(self.data_format, 4)
        in_channels = _args.known_dim(input_shape[axis], "input_shape")
        self.kernels, self.biases = [], []
        for i, units in enumerate(self.filters):
            window = self.kernel_size if i == 0 else (1, 1)
            self.kernels.append(
                self.add_weight(
                    name=f"kernel_{i}",
                    shape=(*window, in_channels, self._conv_channels(i)),
                    initializer=self.kernel_initializer,
                    regularizer=self.kernel_regularizer,
                )
            )
            if not self.batch_norm:
                self.biases.append(
                    self.add_weight(
                        name=f"bias_{i}",
                        shape=(self._conv_channels(i),),
                        initializer=self.bias_initializer,
                        regularizer=self.bias_regularizer,
                    )
                )
            in_channels = units
        self.norms = []
        if self.batch_norm:
            shape = list(self.compute_output_shape(input_shape))
            for i in range(len(self.filters)):
                shape[axis] = self._conv_channels(i)
                # The layer's own dtype policy, not the global one: a per-layer mixed policy would
                # otherwise feed float16 maps to float32 normalizations.
                norm = FusedBatchNormalization(axis=axis, name=f"batch_norm_{i}", dtype=self.dtype_policy)
                norm.build(tuple(shape))
                self.norms.append(norm)
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={axis: input_shape[axis]})

    def _linear(self, x, i: int, training):
        """Convolution ``i`` with its bias, or with its batch normalization."""
        if i == 0:
            x = ops.conv(x, self.kernels[0], self.strides, self.padding, data_format=self.data_format)
        else:
            x = ops.conv(x, self.kernels[i], 1, "valid", data_format=self.data_format)
        if self.batch_norm:
            return self.norms[i](x, training=training)
        return _args.add_channel_bias(x, self.biases[i], self.data_format)

    def compute_output_shape(self, input_shape):
        return _args.window_output_shape(
            input_shape, self.kernel_size, self.strides, self.padding, self.data_format, type(self).__name__,
            channels=self.filters[-1],
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": list(self.filters),
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "padding": self.padding,
                "batch_norm": self.batch_norm,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
                "data_format": self.data_format,
            }
        )
        return config
