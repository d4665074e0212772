"""Global contrast normalization (GCN) with pylearn2's semantics."""

from __future__ import annotations

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="nin_keras")
class GlobalContrastNormalization(keras.layers.Layer):
    """Per-example global contrast normalization, as pylearn2's ``global_contrast_normalize``.

    Each example is treated as one vector of all its pixels and channels. With ``x`` that vector
    (``n`` values):

    1. ``x <- x - mean(x)`` when ``subtract_mean``;
    2. ``divisor = sqrt(sqrt_bias + sum(x**2)) / scale``, or with ``use_std``
       ``divisor = sqrt(sqrt_bias + var(x, ddof=1)) / scale`` (``ddof=0`` when ``n == 1``);
    3. divisors below ``min_divisor`` are raised to ``min_divisor`` (a flat image stays 0);
    4. ``x <- x / divisor``.

    Step 3 is where this layer departs from pylearn2, which replaces such divisors by 1. The two
    agree on every image whose divisor is 0 (flat) or at least ``min_divisor``: with the
    defaults and every recipe here, every image of integer pixels (the divisor of a non-flat one
    is at least ``1 / (scale * sqrt(n))``). They differ only on images of nonzero contrast below
    that floor, which pylearn2 leaves unscaled and this layer scales by ``1 / min_divisor``. The
    floor is a clamp so that the layer needs no comparison: the int8 comparisons of TensorFlow
    Lite for Microcontrollers need input scales below 1, far below the energy's, and with the
    clamp an integer-only artifact runs GCN there (see ``nin_keras.export.micro``).

    The Maxout/NIN CIFAR recipe is ``GlobalContrastNormalization(scale=55.)``: every image gets
    mean 0 and L2 norm 55. The SVHN recipe uses the defaults before LCN.

    Precision: the layer has no matrix product or convolution, only element-wise operations and
    sums, which GPUs compute in full float32 (TF32 applies to matrix products and convolutions),
    so unlike the other whitening layers it needs no precision request (measured on an H200
    under JAX: within 6e-6, issue 27).

    Args:
        scale: Target norm (or standard deviation with ``use_std``) of each example.
        sqrt_bias: Added under the square root; regularizes nearly flat images.
        use_std: Divide by the standard deviation (``ddof=1``) instead of the L2 norm.
        min_divisor: Divisors below this are raised to it (see step 3).
        subtract_mean: Subtract each example's mean first.
        **kwargs: Base ``keras.layers.Layer`` arguments (``name``, ``dtype``, ...).

    Input shape:
        ``(batch, d1, ..., dk)`` with ``k >= 1`` and known ``d1..dk``; any numeric dtype
        (``uint8`` images are cast to the layer's compute dtype).

    Output shape:
        Same as the input, in the compute dtype.

    Example:
        >>> gcn = GlobalContrastNormalization(scale=55.0)
        >>> y = gcn(np.random.randint(0, 256, (8, 32, 32, 3), dtype="uint8"))
        >>> np.linalg.norm(np.reshape(y, (8, -1)), axis=1)  # all 55
    """

    def __init__(self, scale: float = 1.0, sqrt_bias: float = 0.0, use_std: bool = False,
                 min_divisor: float = 1e-8, subtract_mean: bool = True, **kwargs):
        super().__init__(**kwargs)
        if min_divisor < 0:
            raise ValueError(f"min_divisor must be >= 0, got {min_divisor}")
        if scale < min_divisor:
            # pylearn2 asserts this too: a smaller scale would make every divisor fall below the floor.
            raise ValueError(f"scale must be >= min_divisor ({min_divisor}), got {scale}")
        if sqrt_bias < 0:
            raise ValueError(f"sqrt_bias must be >= 0, got {sqrt_bias}")
        self.scale = float(scale)
        self.sqrt_bias = float(sqrt_bias)
        self.use_std = bool(use_std)
        self.min_divisor = float(min_divisor)
        self.subtract_mean = bool(subtract_mean)

    def build(self, input_shape):
        if len(input_shape) < 2:
            raise ValueError(f"{self.name} expects a batch of examples (rank >= 2), got input shape "
                             f"{tuple(input_shape)}")
        if any(dim is None for dim in input_shape[1:]):
            raise ValueError(f"{self.name} needs known non-batch dimensions, got {tuple(input_shape)}")
        self._size = math.prod(input_shape[1:])

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        axes = tuple(range(1, len(x.shape)))
        if self.subtract_mean:
            x = x - ops.mean(x, axis=axes, keepdims=True)
        if self.use_std:
            ddof = 1 if self._size > 1 else 0
            centered = x - ops.mean(x, axis=axes, keepdims=True)
            energy = ops.sum(ops.square(centered), axis=axes, keepdims=True) / (self._size - ddof)
        else:
            energy = ops.sum(ops.square(x), axis=axes, keepdims=True)
        # x / max(divisor, min_divisor) as x * scale * rsqrt(max(...)): RSQRT, MUL and MAXIMUM
        # have int8 kernels in TensorFlow Lite for Microcontrollers, SQRT has none (step 3 says
        # why there is no comparison).
        floor = (self.min_divisor * self.scale) ** 2
        return x * (self.scale * ops.rsqrt(ops.maximum(self.sqrt_bias + energy, floor)))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(scale=self.scale, sqrt_bias=self.sqrt_bias, use_std=self.use_std,
                      min_divisor=self.min_divisor, subtract_mean=self.subtract_mean)
        return config
