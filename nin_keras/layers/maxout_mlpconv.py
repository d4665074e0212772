"""The maxout mlpconv of Maxout Network in Network (MIN; Chang & Chen 2015, arXiv:1511.02583)."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from nin_keras.layers import _args
from nin_keras.layers._conv_stack import ConvStackLayer
from nin_keras.layers.maxout import max_over_pieces


@keras.saving.register_keras_serializable(package="nin_keras")
class MaxoutMLPConv(ConvStackLayer):
    """An mlpconv whose units are maxout units: each convolution, then the max over its pieces.

    Convolution ``i`` (the k×k one first, then 1×1 ones) has ``filters[i] * pieces[i]`` output
    channels; unit ``u`` of it is the maximum of its ``pieces[i]`` channels. With
    ``batch_norm=True`` a batch normalization sits between each convolution and the max (MIN's
    "batch-normalized maxout unit"), over all ``filters[i] * pieces[i]`` channels. A convolution
    with one piece has no nonlinearity: it is linear (MIN's k×k convolution is one).

    Weight layout: ``[kernel_0, bias_0, kernel_1, bias_1, ...]``; ``kernel_0`` has shape
    ``(kh, kw, in_channels, filters[0] * pieces[0])``, ``kernel_i`` for ``i > 0``
    ``(1, 1, filters[i-1], filters[i] * pieces[i])``; the channels are unit-major, as in
    ``MaxoutConv2D``: channel ``u * pieces[i] + p`` is piece ``p`` of unit ``u``. With
    ``batch_norm=True`` the convolutions have no bias and each normalization's ``gamma, beta,
    moving_mean, moving_variance`` follow the kernels; ``nin_keras.models.folding`` writes them
    into the ``batch_norm=False`` layout.

    Args:
        filters: maxout units of each convolution, e.g. ``(192, 160, 96)``.
        pieces: linear pieces per unit of each convolution, e.g. ``(1, 5, 5)`` (same length as
            ``filters``), or one int for every convolution.
        kernel_size: size of the first convolution's kernel (int or pair).
        strides: strides of the first convolution (int or pair).
        padding: ``"same"`` or ``"valid"``, for the first convolution.
        batch_norm: insert batch normalization between each convolution and its max.
        kernel_initializer, bias_initializer: initializers of all convolutions.
        kernel_regularizer, bias_regularizer: regularizers of all convolutions.
        data_format: ``"channels_last"`` (default from the Keras config) or ``"channels_first"``.
        **kwargs: Base ``keras.layers.Layer`` arguments; a ``dtype`` policy applies to the batch
            normalizations too.

    Input shape: 4-D ``(batch, rows, cols, channels)`` (or channels first).
    Output shape: 4-D ``(batch, new_rows, new_cols, filters[-1])`` (or channels first).

    Example:
    >>> layer = MaxoutMLPConv((192, 160, 96), pieces=(1, 5, 5), kernel_size=5, batch_norm=True)
    >>> print(layer(keras.ops.zeros((2, 32, 32, 3))).shape)
    (2, 32, 32, 96)
    """

    def __init__(
        self,
        filters: Sequence[int],
        pieces: int | Sequence[int],
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
        super().__init__(
            filters, kernel_size, strides=strides, padding=padding, batch_norm=batch_norm,
            kernel_initializer=kernel_initializer, bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
            data_format=data_format, **kwargs,
        )
        self.pieces = _args.int_tuple(pieces, len(self.filters), "pieces")

    def _conv_channels(self, i: int) -> int:
        return self.filters[i] * self.pieces[i]

    def call(self, inputs, training=None):
        x = inputs
        axis = _args.channel_axis(self.data_format, 4)
        for i, (units, pieces) in enumerate(zip(self.filters, self.pieces)):
            x = self._linear(x, i, training)
            if pieces > 1:  # the max over one piece is the identity: no reshape for it in the graph
                x = max_over_pieces(x, units, pieces, axis=axis)
        return x

    def get_config(self):
        config = super().get_config()
        config["pieces"] = list(self.pieces)
        return config
