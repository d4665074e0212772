"""Whitening as one small convolution: the compact stand-in for the dense ZCA matrix."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops
from numpy.lib.stride_tricks import sliding_window_view

from nin_keras.layers._args import choice
from nin_keras.layers._precision import float32_precision
from nin_keras.layers.zca import ZCAWhitening, _iter_batches

_PADDINGS = {"zeros": "constant", "reflect": "reflect", "symmetric": "symmetric"}


@keras.saving.register_keras_serializable(package="nin_keras")
class ConvWhitening(keras.layers.Layer):
    """Whitening by a ``k x k`` convolution: ``y = conv(pad(x), kernel) + bias``.

    The ZCA matrix of natural images is nearly a local, shift-invariant filter: each whitened
    pixel depends mostly on its neighbours. This layer keeps only that part, ``k*k*C*C + C``
    numbers (444 for a 7x7 kernel on RGB) instead of the ``(H*W*C)^2`` of ``ZCAWhitening``
    (9.4 million at 32x32x3), and it runs on images of any size. Two ways to fit it, both with
    ``adapt``:

    - ``adapt(data, teacher=zca)`` *distils* a fitted ``ZCAWhitening``: the kernel and bias are
      the least-squares solution mapping every padded ``k x k`` patch of ``data`` (the teacher's
      input, e.g. GCN output) to the teacher's output at the patch centre. A network trained on
      the dense ZCA then sees almost the same input.
    - ``adapt(data)`` fits a *patch ZCA* from the data alone: with ``S`` the covariance of the
      ``k x k x C`` patches and ``W = U diag(1 / sqrt(eig + filter_bias)) U^T`` its ZCA matrix,
      output channel ``c`` is row ``(centre, c)`` of ``W`` applied to the centred patch.

    Both accumulate ``k*k*C + 1`` square sums in float64 over batches, so any number of images
    can be streamed; ``max_examples`` with ``seed`` picks a seeded random subset of an array.

    ``kernel`` and ``bias`` are non-trainable weights (saved in presets and exports). Before
    ``adapt`` (or loading weights) the layer is the identity.

    The convolution asks for full float32 precision on every backend, never TF32 (on TensorFlow
    that switches TF32 off for the whole process; ``nin_keras.layers._precision`` says how each
    backend is asked and why).

    Args:
        kernel_size: odd ``k`` of the ``k x k`` kernel.
        padding: how borders are extended before the convolution: ``"symmetric"`` (mirror
            including the edge pixel), ``"reflect"`` (mirror without it) or ``"zeros"``.
        filter_bias: added to the patch covariance eigenvalues by the patch-ZCA fit (ignored
            when distilling: the teacher carries its own).
        **kwargs: Base ``keras.layers.Layer`` arguments.

    Input shape:
        ``(batch, height, width, channels)`` with known ``channels``; height and width at least
        ``kernel_size``.

    Output shape:
        Same as the input, in the compute dtype.

    Example:
        >>> gcn = GlobalContrastNormalization(scale=55.0)
        >>> zca = ZCAWhitening(filter_bias=0.1).adapt(gcn(train_images))
        >>> compact = ConvWhitening(kernel_size=7).adapt(gcn(train_images[:3000]), teacher=zca)
        >>> whitened = compact(gcn(images))      # close to zca(gcn(images))
    """

    def __init__(self, kernel_size: int = 7, padding: str = "symmetric", filter_bias: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(kernel_size, (int, np.integer)) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size!r}")
        if not filter_bias >= 0:
            raise ValueError(f"filter_bias must be >= 0, got {filter_bias!r}")
        self.kernel_size = int(kernel_size)
        self.padding = choice(padding, tuple(_PADDINGS), "padding")
        self.filter_bias = float(filter_bias)

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(f"{self.name} needs (batch, height, width, channels) input with known channels, "
                             f"got input shape {tuple(input_shape)}")
        self._check_spatial(input_shape[1:3])
        channels = int(input_shape[-1])
        k = self.kernel_size
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: channels})
        identity = np.zeros((k, k, channels, channels), np.float32)
        identity[k // 2, k // 2] = np.eye(channels)
        self.kernel = self.add_weight(name="kernel", shape=identity.shape, trainable=False,
                                      initializer=keras.initializers.Constant(identity))
        self.bias = self.add_weight(name="bias", shape=(channels,), initializer="zeros", trainable=False)

    def _check_spatial(self, spatial) -> None:
        for dim in spatial:
            if dim is not None and dim < self.kernel_size:
                raise ValueError(f"{self.name}: kernel_size {self.kernel_size} is larger than the "
                                 f"{spatial[0]}x{spatial[1]} image")

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        half = self.kernel_size // 2
        if half:
            x = ops.pad(x, [[0, 0], [half, half], [half, half], [0, 0]], mode=_PADDINGS[self.padding])
        with float32_precision():
            y = ops.conv(x, ops.cast(self.kernel, self.compute_dtype), padding="valid")
        return y + ops.cast(self.bias, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def adapt(self, data: Any, teacher: ZCAWhitening | None = None, max_examples: int | None = None,
              seed: int = 0, steps: int | None = None) -> "ConvWhitening":
        """Fit ``kernel`` and ``bias`` on ``data`` (distilled from ``teacher``, or a patch ZCA).

        Args:
            data: float images ``(N, H, W, C)`` as a NumPy array or a ``tf.data.Dataset`` of
                batches (or ``(images, labels)`` batches): the input this layer will see (GCN
                output in the paper's CIFAR preprocessing).
            teacher: a fitted ``ZCAWhitening`` on images of the same shape to distil.
            max_examples: fit on at most this many images: a random subset of an array (drawn
                with ``seed``), the first ones of a dataset.
            seed: seeds that subset (the fit is otherwise deterministic).
            steps: read at most this many batches from a dataset.

        Returns:
            The layer, adapted.

        Raises:
            ValueError: images of rank other than 4, non-finite values, a kernel larger than the
                images, a teacher fitted on another shape, or too few images to determine the
                ``k*k*C + 1`` unknowns of each output channel.
        """
        if max_examples is not None and isinstance(data, np.ndarray) and len(data) > max_examples:
            data = data[np.sort(np.random.default_rng(seed).choice(len(data), max_examples, replace=False))]
        sums = _PatchSums()
        for batch in _iter_batches(data, steps, chunk=128):
            if max_examples is not None:
                batch = batch[: max_examples - sums.images]
                if not len(batch):
                    break
            batch = np.asarray(batch, np.float64)
            if batch.ndim != 4:
                raise ValueError(f"{self.name}.adapt: expects images (N, H, W, C), got shape {batch.shape}")
            if not np.all(np.isfinite(batch)):
                raise ValueError(f"{self.name}.adapt: data contains NaN or infinite values")
            if not self.built:
                self.build((None, *batch.shape[1:]))
            self._check_spatial(batch.shape[1:3])
            target = None if teacher is None else _teacher_output(teacher, batch)
            sums.add(patches(batch, self.kernel_size, self.padding), target, batch.shape[0])
        channels = int(self.kernel.shape[-1])
        sums.check_enough(self.name, self.kernel_size * self.kernel_size * channels + 1)
        kernel, bias = sums.distilled() if teacher is not None else sums.patch_zca(channels, self.filter_bias)
        self.kernel.assign(kernel.reshape(self.kernel.shape).astype(np.float32))
        self.bias.assign(bias.astype(np.float32))
        return self

    def get_config(self):
        config = super().get_config()
        config.update(kernel_size=self.kernel_size, padding=self.padding, filter_bias=self.filter_bias)
        return config


def patches(images: np.ndarray, kernel_size: int, padding: str) -> np.ndarray:
    """Every ``k x k`` patch of padded ``images`` as rows ``(N*H*W, k*k*C)``, ordered
    ``(row, column, channel)`` like a Keras ``(k, k, C, filters)`` kernel's first three axes."""
    half = kernel_size // 2
    padded = np.pad(images, ((0, 0), (half, half), (half, half), (0, 0)), mode=_PADDINGS[padding])
    windows = sliding_window_view(padded, (kernel_size, kernel_size), axis=(1, 2))  # N H W C k k
    return windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, kernel_size * kernel_size * images.shape[-1])


def _teacher_output(teacher: ZCAWhitening, images: np.ndarray) -> np.ndarray:
    """The dense ZCA's output per pixel, ``(N*H*W, C)``, computed in float64."""
    if not teacher.built or tuple(teacher._feature_shape) != tuple(images.shape[1:]):
        shape = getattr(teacher, "_feature_shape", None)
        raise ValueError(f"teacher {teacher.name} is fitted on examples of shape {shape}, the data has "
                         f"{tuple(images.shape[1:])}")
    mean = np.asarray(keras.ops.convert_to_numpy(teacher.mean), np.float64)
    whitening = np.asarray(keras.ops.convert_to_numpy(teacher.whitening), np.float64)
    flat = images.reshape(len(images), -1) - mean
    return (flat @ whitening).reshape(-1, images.shape[-1])


class _PatchSums:
    """Float64 sums over patch rows: count, sum, Gram matrix, and the cross term with a target."""

    def __init__(self):
        self.rows = self.images = 0
        self.total = self.gram = self.cross = self.target_total = None

    def add(self, rows: np.ndarray, target: np.ndarray | None, images: int) -> None:
        if self.gram is None:
            self.total = np.zeros(rows.shape[1])
            self.gram = np.zeros((rows.shape[1], rows.shape[1]))
            if target is not None:
                self.cross = np.zeros((rows.shape[1], target.shape[1]))
                self.target_total = np.zeros(target.shape[1])
        self.rows += len(rows)
        self.images += images
        self.total += rows.sum(axis=0)
        self.gram += rows.T @ rows
        if target is not None:
            self.cross += rows.T @ target
            self.target_total += target.sum(axis=0)

    def check_enough(self, name: str, unknowns: int) -> None:
        # Neighbouring patches overlap, so rows are far from independent: ask for whole images
        # worth of rows, and at least as many images as unknowns per output channel.
        if self.images < unknowns:
            raise ValueError(f"{name}.adapt: {self.images} images are too few to fit {unknowns} unknowns per "
                             f"output channel; give at least {unknowns} images")

    def distilled(self) -> tuple[np.ndarray, np.ndarray]:
        """Least squares ``[patch, 1] @ [[kernel], [bias]] ~ target`` by the normal equations."""
        n = self.rows
        size = len(self.total)
        augmented = np.empty((size + 1, size + 1))
        augmented[:size, :size] = self.gram
        augmented[:size, size] = augmented[size, :size] = self.total
        augmented[size, size] = n
        rhs = np.vstack([self.cross, self.target_total[None]])
        # A tiny ridge keeps the solve defined when patches are exactly collinear (flat images).
        ridge = 1e-10 * np.trace(augmented) / (size + 1)
        solution = np.linalg.solve(augmented + ridge * np.eye(size + 1), rhs)
        return solution[:size], solution[size]

    def patch_zca(self, channels: int, filter_bias: float) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the patch ZCA matrix at the patch centre, and the bias that centres the data."""
        mean = self.total / self.rows
        covariance = self.gram / self.rows - np.outer(mean, mean)
        eigenvalues, eigenvectors = np.linalg.eigh(covariance + filter_bias * np.eye(len(mean)))
        if eigenvalues.min() <= 0:
            raise ValueError(f"patch covariance + filter_bias is not positive definite (smallest eigenvalue "
                             f"{eigenvalues.min():.3g}); use filter_bias > 0")
        whitening = (eigenvectors / np.sqrt(eigenvalues)) @ eigenvectors.T
        centre = (len(mean) // channels) // 2 * channels
        rows = whitening[centre:centre + channels]  # (C, k*k*C), one row per output channel
        return rows.T, -rows @ mean
