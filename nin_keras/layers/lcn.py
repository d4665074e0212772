"""Local contrast normalization as pylearn2's ``LeCunLCN`` (used for SVHN in Maxout and NIN)."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from nin_keras.layers._args import check_rank, known_dim, positive_int
from nin_keras.layers._precision import float32_precision


def gaussian_kernel(kernel_size: int, sigma: float) -> np.ndarray:
    """A ``kernel_size x kernel_size`` Gaussian centred on the middle tap, normalized to sum 1."""
    return np.outer(*[gaussian_taps(kernel_size, sigma)] * 2)


def gaussian_taps(kernel_size: int, sigma: float) -> np.ndarray:
    """The 1-D factor ``g`` of ``gaussian_kernel``: ``outer(g, g)`` is the normalized 2-D kernel."""
    offsets = np.arange(kernel_size) - kernel_size // 2
    taps = np.exp(-(offsets**2) / (2.0 * sigma**2))
    return taps / taps.sum()


def banded_filter(length: int, taps: np.ndarray) -> np.ndarray:
    """``M`` with ``(v @ M)[i] = sum_t taps[t] * v[i + t - mid]``, zero outside ``0..length-1``.

    Multiplying by ``M`` is the "same"-size, zero-padded 1-D filtering of a length-``length``
    axis; as a matrix product it runs at BLAS speed instead of a depthwise convolution's.
    """
    mid = len(taps) // 2
    matrix = np.zeros((length, length))
    for t, tap in enumerate(taps):
        matrix += tap * np.eye(length, k=mid - t)
    return matrix


@keras.saving.register_keras_serializable(package="nin_keras")
class LocalContrastNormalization(keras.layers.Layer):
    """Subtractive then divisive local contrast normalization, per channel (Jarrett et al. 2009).

    With ``g`` the normalized Gaussian kernel and ``*`` a 2-D convolution applied to each channel
    of each image separately, this computes pylearn2's ``lecun_lcn``::

        centered = x - g * x
        local    = sqrt(g * x**2)
        divisor  = max(max(mean_hw(local), local), threshold)
        y        = centered / divisor

    where ``mean_hw`` is the mean over the image's pixels of that channel. Note that, as in
    pylearn2, the divisive term uses the local energy of the *input* ``x``, not of ``centered``.

    Border handling: zero padding, the kernel is not renormalized at the border ("same"
    convolution; pylearn2's ``border_mode='full'`` convolution cropped by ``kernel_size // 2``
    on each side is the same thing). Pixels within ``kernel_size // 2`` of an edge therefore see
    zeros outside the image, which pulls their local mean and energy towards 0.

    The Gaussian is separable (``gaussian_kernel = outer(g, g)`` exactly), so the filtering is
    two matrix products with banded ``height x height`` and ``width x width`` matrices, about 5x
    faster on CPU than a 7x7 depthwise convolution and the same numbers. The products ask for full
    float32 precision on every backend, never TF32 (on TensorFlow that switches TF32 off for the
    whole process; ``nin_keras.layers._precision`` says how each backend is asked and why).

    Args:
        kernel_size: Odd width of the square Gaussian kernel (7 for SVHN).
        sigma: Standard deviation of the Gaussian in pixels (2 for SVHN).
        threshold: Floor of the divisor.
        **kwargs: Base ``keras.layers.Layer`` arguments.

    Input shape:
        ``(batch, height, width, channels)``, channels last, known height, width and channels.

    Output shape:
        Same as the input, in the compute dtype.

    Example:
        >>> lcn = LocalContrastNormalization()          # 7x7, sigma 2, threshold 1e-4
        >>> y = lcn(GlobalContrastNormalization()(svhn_images))
    """

    def __init__(self, kernel_size: int = 7, sigma: float = 2.0, threshold: float = 1e-4,
                 **kwargs):
        super().__init__(**kwargs)
        if positive_int(kernel_size, "kernel_size") % 2 == 0:
            raise ValueError(f"`kernel_size` must be odd (the kernel is centred), got {kernel_size}.")
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        if not threshold >= 0:
            raise ValueError(f"threshold must be >= 0, got {threshold}")
        self.kernel_size = int(kernel_size)
        self.sigma = float(sigma)
        self.threshold = float(threshold)

    def build(self, input_shape):
        check_rank(input_shape, 4, self.name)
        known_dim(input_shape[-1], "inputs")
        if input_shape[1] is None or input_shape[2] is None:
            raise ValueError(f"{self.name} needs known height and width, got `input_shape`="
                             f"{tuple(input_shape)}.")
        taps = gaussian_taps(self.kernel_size, self.sigma)
        self._rows = banded_filter(int(input_shape[1]), taps).astype(self.compute_dtype)
        self._cols = banded_filter(int(input_shape[2]), taps).astype(self.compute_dtype)

    def _filter(self, x):
        with float32_precision():
            x = ops.einsum("bhwc,wv->bhvc", x, ops.convert_to_tensor(self._cols))
            return ops.einsum("bhwc,hv->bvwc", x, ops.convert_to_tensor(self._rows))

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        # x and x**2 are filtered in one pass, stacked on the channel axis.
        filtered = self._filter(ops.concatenate([x, ops.square(x)], axis=-1))
        local_mean, local_energy = ops.split(filtered, 2, axis=-1)
        # Clamp a rounding residue below 0 so the square root never yields NaN.
        local = ops.sqrt(ops.maximum(local_energy, 0.0))
        divisor = ops.maximum(ops.mean(local, axis=(1, 2), keepdims=True), local)
        return (x - local_mean) / ops.maximum(divisor, self.threshold)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(kernel_size=self.kernel_size, sigma=self.sigma, threshold=self.threshold)
        return config
