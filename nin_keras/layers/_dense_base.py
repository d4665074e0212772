"""The base of the layers whose weights are a Dense-style kernel and bias (``DropConnect``, the maxout
layers): the initializer/regularizer/constraint arguments, the two weights and their config."""

from __future__ import annotations

import keras

from nin_keras.layers import _args


class DenseStyleLayer(keras.layers.Layer):
    """A layer with a ``kernel`` and an optional ``bias`` along its last axis, configured like Dense.

    Subclasses create the weights with ``add_kernel_and_bias`` (or ``build_on_features`` when the
    kernel maps the input's last axis) and put ``weight_arguments_config()`` at the end of their
    ``get_config``.

    Args:
        use_bias: whether the layer has a bias.
        kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer,
        kernel_constraint, bias_constraint: as in ``keras.layers.Dense``.
        **kwargs: base ``keras.layers.Layer`` arguments.
    """

    def __init__(
        self,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)

    def add_kernel_and_bias(self, kernel_shape: tuple[int, ...], width: int) -> None:
        """Create ``kernel`` of shape ``(*kernel_shape, width)`` and ``bias`` ``(width,)`` (None without bias)."""
        self.kernel = self.add_weight(
            name="kernel",
            shape=(*kernel_shape, width),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(width,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )

    def build_on_features(self, input_shape, width: int) -> None:
        """Build a kernel ``(features, width)`` over the last axis of a rank >= 2 input."""
        _args.check_min_rank(input_shape, 2, type(self).__name__)
        features = _args.known_dim(input_shape[-1], "input_shape")
        self.add_kernel_and_bias((features,), width)
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: features})

    def features_output_shape(self, input_shape, units: int) -> tuple:
        """``input_shape`` with its last axis replaced by ``units`` (rank >= 2 checked)."""
        _args.check_min_rank(input_shape, 2, type(self).__name__)
        return (*input_shape[:-1], units)

    def weight_arguments_config(self) -> dict:
        """The six initializer/regularizer/constraint arguments, serialized as Dense does."""
        return {
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": keras.constraints.serialize(self.kernel_constraint),
            "bias_constraint": keras.constraints.serialize(self.bias_constraint),
        }
