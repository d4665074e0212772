"""DropConnect (Wan et al. 2013): a dense layer whose weights, not activations, are dropped."""

from __future__ import annotations

import keras
from keras import ops

from nin_keras.layers import _args
from nin_keras.layers._dense_base import DenseStyleLayer


@keras.saving.register_keras_serializable(package="nin_keras")
class DropConnect(DenseStyleLayer):
    """Dense layer that drops each weight with probability ``rate`` during training.

    Training: ``y = activation(x · (W ⊙ M) / (1 - rate) + b)`` with ``M`` a Bernoulli(1 - rate)
    mask over the kernel, drawn once per batch (Wan et al. draw one per example; sharing it keeps
    memory at the kernel's size). The bias is never dropped. The ``1 / (1 - rate)`` scaling makes
    the expected pre-activation ``x · W + b``, so inference needs no rescaling.

    Inference (``inference``):
        - ``"mean"``: the plain expectation, ``activation(x · W + b)``: exactly a Dense layer
          with the same weights.
        - ``"gaussian"``: the mean-field inference of Wan et al. (their Algorithm 2). The
          pre-activation ``u`` is approximated by a Gaussian with mean ``x · W + b`` and variance
          ``rate / (1 - rate) · (x² · W²)`` (the variance of the scaled masked sum);
          ``samples`` draws of ``activation(u)`` are averaged. With a linear activation the
          average is the mean, so the layer returns it exactly.

    Args:
        units: number of outputs.
        rate: probability of dropping each weight, in [0, 1).
        activation: activation function (default linear).
        use_bias: whether to add a bias.
        inference: ``"mean"`` or ``"gaussian"``.
        samples: number of Gaussian samples for ``inference="gaussian"``.
        seed: seed of the layer's ``keras.random.SeedGenerator``.
        kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer,
        kernel_constraint, bias_constraint: as in ``keras.layers.Dense``.

    Input shape: ``(batch, ..., features)``, rank at least 2.
    Output shape: ``(batch, ..., units)``.

    Example:
    >>> print(DropConnect(64, rate=0.5, activation="relu")(keras.ops.ones((2, 32))).shape)
    (2, 64)
    """

    def __init__(
        self,
        units: int,
        rate: float = 0.5,
        activation: str | None = None,
        use_bias: bool = True,
        inference: str = "mean",
        samples: int = 64,
        seed: int | None = None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(use_bias, kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer,
                         kernel_constraint, bias_constraint, **kwargs)
        self.units = _args.positive_int(units, "units")
        self.rate = _args.rate(rate, "rate")
        self.activation = keras.activations.get(activation)
        self.inference = _args.choice(inference, ("mean", "gaussian"), "inference")
        self.samples = _args.positive_int(samples, "samples")
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.input_spec = keras.layers.InputSpec(min_ndim=2)

    def build(self, input_shape):
        self.build_on_features(input_shape, self.units)

    def _affine(self, inputs, kernel):
        z = ops.matmul(inputs, kernel)
        return z if self.bias is None else ops.add(z, self.bias)

    def call(self, inputs, training=None):
        if training and self.rate > 0:
            # keras.random.dropout zeroes each weight with probability `rate` and scales the rest;
            # it takes a tensor (JAX rejects the variable itself).
            kernel = keras.random.dropout(ops.convert_to_tensor(self.kernel), self.rate, seed=self.seed_generator)
            return self.activation(self._affine(inputs, kernel))
        mean = self._affine(inputs, self.kernel)
        if self.inference == "mean" or self.rate == 0 or self.activation is keras.activations.linear:
            return self.activation(mean)
        variance = (self.rate / (1.0 - self.rate)) * ops.matmul(ops.square(inputs), ops.square(self.kernel))
        noise = keras.random.normal((self.samples, *ops.shape(mean)), seed=self.seed_generator, dtype=mean.dtype)
        return ops.mean(self.activation(mean + ops.sqrt(variance) * noise), axis=0)

    def compute_output_shape(self, input_shape):
        return self.features_output_shape(input_shape, self.units)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "rate": self.rate,
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "inference": self.inference,
                "samples": self.samples,
                "seed": self.seed,
                **self.weight_arguments_config(),
            }
        )
        return config
