"""The mlpconv layer of Network in Network (Lin et al. 2014, Section 3.1)."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from nin_keras.layers._conv_stack import ConvStackLayer


@keras.saving.register_keras_serializable(package="nin_keras")
class MLPConv(ConvStackLayer):
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
        super().__init__(
            filters, kernel_size, strides=strides, padding=padding, batch_norm=batch_norm,
            kernel_initializer=kernel_initializer, bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
            data_format=data_format, **kwargs,
        )
        self.activation = keras.activations.get(activation)
        self.linear_last = bool(linear_last)

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
        x = self._linear(x, i, training)
        if not (self.linear_last and i == len(self.kernels) - 1):
            x = self.activation(x)
        return x

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "activation": keras.activations.serialize(self.activation),
                "linear_last": self.linear_last,
            }
        )
        return config
