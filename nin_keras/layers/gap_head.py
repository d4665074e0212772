"""The Network-in-Network classifier: global average pooling of per-class maps (Lin et al. 2014, 3.2)."""

from __future__ import annotations

import keras
from keras import ops

from nin_keras.layers import _args


@keras.saving.register_keras_serializable(package="nin_keras")
class GlobalAveragePoolingHead(keras.layers.Layer):
    """Average each per-class confidence map over space, then apply softmax (or nothing).

    The layer has no weights: the last mlpconv produces one feature map per class and the class
    score is that map's spatial mean. Its input is exactly the confidence maps of the paper's
    Section 4.7, so ``model.get_layer("head").input`` gives them (see
    ``nin_keras.models.confidence_map_model``).

    Args:
        activation: ``"softmax"`` for probabilities, ``None`` or ``"linear"`` for logits, or any
            Keras activation identifier.
        data_format: ``"channels_last"`` (default from the Keras config) or ``"channels_first"``.

    Input shape: 4-D ``(batch, rows, cols, classes)`` (or channels first).
    Output shape: 2-D ``(batch, classes)``.

    Example:
    >>> print(GlobalAveragePoolingHead()(keras.ops.zeros((2, 8, 8, 10))).shape)
    (2, 10)
    """

    def __init__(self, activation: str | None = "softmax", data_format: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.activation = keras.activations.get(activation)
        self.data_format = _args.data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def call(self, inputs):
        return self.activation(ops.mean(inputs, axis=_args.spatial_axes(self.data_format)))

    def compute_output_shape(self, input_shape):
        _args.check_rank(input_shape, 4, "GlobalAveragePoolingHead")
        return (input_shape[0], input_shape[_args.channel_axis(self.data_format, 4)])

    def get_config(self):
        config = super().get_config()
        config.update(
            {"activation": keras.activations.serialize(self.activation), "data_format": self.data_format}
        )
        return config
