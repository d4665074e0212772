"""The mlpconv layer of Network in Network (Lin et al. 2014, Section 3.1)."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from nin_keras.layers import _args


@keras.saving.register_keras_serializable(package="nin_keras")
class MLPConv(keras.layers.Layer):
    """A k×k convolution followed by a micro-network of 1×1 convolutions ("cccp" layers).

    Each convolution is followed by an activation (ReLU by default), so the layer is a small
    multilayer perceptron slid over the image, as in the paper's Figure 2. With
    ``batch_norm=True`` a batch normalization sits between each convolution and its activation.

    Weight layout (the Caffe converter relies on it): ``layer.weights`` starts with
    ``[kernel_0, bias_0, kernel_1, bias_1, ...]``; ``kernel_0`` has shape
    ``(kh, kw, in_channels, filters[0])`` and ``kernel_i`` for ``i > 0`` has shape
    ``(1, 1, filters[i-1], filters[i])``. With ``batch_norm=True`` the convolutions have no bias
    (the normalization's beta replaces it), so the list starts ``[kernel_0, kernel_1, ...]``
    followed by each normalization's ``gamma, beta, moving_mean, moving_variance``.

    Args:
        filters: output channels of each convolution, e.g. ``(192, 160, 96)``; the first is the
            k×k convolution, the rest are 1×1.
        kernel_size: size of the first convolution's kernel (int or pair).
        strides: strides of the first convolution (int or pair).
        padding: ``"same"`` or ``"valid"``, for the first convolution.
        activation: activation after every convolution (any Keras activation identifier).
        linear_last: if True, the last convolution has no activation (gives logits-like maps).
        batch_norm: insert batch normalization after each convolution.
        kernel_initializer, bias_initializer: initializers of all convolutions.
        kernel_regularizer, bias_regularizer: regularizers of all convolutions.
        data_format: ``"channels_last"`` (default from the Keras config) or ``"channels_first"``.
        **kwargs: Base ``keras.layers.Layer`` arguments; a ``dtype`` policy applies to the batch
            normalizations too.

    Input shape: 4-D ``(batch, rows, cols, channels)`` (or channels first).
    Output shape: 4-D ``(batch, new_rows, new_cols, filters[-1])`` (or channels first).

    Example:
    >>> layer = MLPConv((192, 160, 96), kernel_size=5)
    >>> print(layer(keras.ops.zeros((2, 32, 32, 3))).shape)
    (2, 32, 32, 96)
    """

    def __init__(
        self,
        filters: Sequence[int],
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] = 1,
        padding: str = "same",
        activation: str | None = "relu",
        linear_last: bool = False,
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
        self.activation = keras.activations.get(activation)
        self.linear_last = bool(linear_last)
        self.batch_norm = bool(batch_norm)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.data_format = _args.data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        _args.check_rank(input_shape, 4, "MLPConv")
        axis = _args.channel_axis(self.data_format, 4)
        in_channels = _args.known_dim(input_shape[axis], "input_shape")
        self.kernels, self.biases = [], []
        for i, out_channels in enumerate(self.filters):
            window = self.kernel_size if i == 0 else (1, 1)
            self.kernels.append(
                self.add_weight(
                    name=f"kernel_{i}",
                    shape=(*window, in_channels, out_channels),
                    initializer=self.kernel_initializer,
                    regularizer=self.kernel_regularizer,
                )
            )
            if not self.batch_norm:
                self.biases.append(
                    self.add_weight(
                        name=f"bias_{i}",
                        shape=(out_channels,),
                        initializer=self.bias_initializer,
                        regularizer=self.bias_regularizer,
                    )
                )
            in_channels = out_channels
        self.norms = []
        if self.batch_norm:
            shape = list(self.compute_output_shape(input_shape))
            for i, out_channels in enumerate(self.filters):
                shape[axis] = out_channels
                # The layer's own dtype policy, not the global one: a per-layer mixed policy would
                # otherwise feed float16 maps to float32 normalizations.
                norm = keras.layers.BatchNormalization(axis=axis, name=f"batch_norm_{i}",
                                                       dtype=self.dtype_policy)
                norm.build(tuple(shape))
                self.norms.append(norm)
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={axis: input_shape[axis]})

    def call(self, inputs, training=None):
        return self._convolution(self.hidden(inputs, training=training), len(self.kernels) - 1, training)

    def hidden(self, inputs, training=None):
        """The micro-network's last hidden layer: the input of the last convolution.

        ``call`` is the last convolution of this; a new classifier fitted in closed form on a
        frozen body (``nin_keras.train.head_fit``) needs these features, of which the last
        convolution is a linear map.
        """
        x = inputs
        for i in range(len(self.kernels) - 1):
            x = self._convolution(x, i, training)
        return x

    def _convolution(self, x, i, training):
        """Convolution ``i`` with its bias or batch norm and (unless ``linear_last`` and last) activation."""
        if i == 0:
            x = ops.conv(x, self.kernels[0], self.strides, self.padding, data_format=self.data_format)
        else:
            x = ops.conv(x, self.kernels[i], 1, "valid", data_format=self.data_format)
        if self.batch_norm:
            x = self.norms[i](x, training=training)
        else:
            x = _args.add_channel_bias(x, self.biases[i], self.data_format)
        if not (self.linear_last and i == len(self.kernels) - 1):
            x = self.activation(x)
        return x

    def compute_output_shape(self, input_shape):
        return _args.window_output_shape(
            input_shape, self.kernel_size, self.strides, self.padding, self.data_format, "MLPConv",
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
                "activation": keras.activations.serialize(self.activation),
                "linear_last": self.linear_last,
                "batch_norm": self.batch_norm,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
                "data_format": self.data_format,
            }
        )
        return config
