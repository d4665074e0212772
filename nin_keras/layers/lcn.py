"""Local contrast normalization as pylearn2's ``LeCunLCN`` (used for SVHN in Maxout and NIN)."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from nin_keras.layers._args import check_rank, known_dim, positive_int


def gaussian_kernel(kernel_size: int, sigma: float) -> np.ndarray:
    """A ``kernel_size x kernel_size`` Gaussian centred on the middle tap, normalized to sum 1."""
    offsets = np.arange(kernel_size) - kernel_size // 2
    kernel = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2.0 * sigma**2))
    return kernel / kernel.sum()


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

    Args:
        kernel_size: Odd width of the square Gaussian kernel (7 for SVHN).
        sigma: Standard deviation of the Gaussian in pixels (2 for SVHN).
        threshold: Floor of the divisor.
        **kwargs: Base ``keras.layers.Layer`` arguments.

    Input shape:
        ``(batch, height, width, channels)``, channels last, known channel count.

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
        channels = known_dim(input_shape[-1], "inputs")
        # One depthwise pass filters x and x**2 together: 2 * channels input channels.
        kernel = gaussian_kernel(self.kernel_size, self.sigma)
        self._kernel = np.tile(kernel[:, :, None, None], (1, 1, 2 * channels, 1)).astype(
            self.compute_dtype)

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        filtered = ops.depthwise_conv(ops.concatenate([x, ops.square(x)], axis=-1),
                                      ops.convert_to_tensor(self._kernel), strides=1,
                                      padding="same")
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
