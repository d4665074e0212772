"""ZCA whitening fitted on a training set, with pylearn2's ``ZCA`` formulas."""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import ops

from nin_keras.layers._args import choice
from nin_keras.layers._precision import float32_precision

_MATRIX_DTYPES = ("float32", "float16")


@keras.saving.register_keras_serializable(package="nin_keras")
class ZCAWhitening(keras.layers.Layer):
    """ZCA whitening: ``y = (x - mean) @ W`` with ``W = U diag(1/sqrt(eig + filter_bias)) U^T``.

    ``adapt(data)`` fits the statistics as pylearn2's ``ZCA.fit`` does: ``mean`` is the
    per-feature mean, ``eig, U`` the eigen-decomposition of the biased covariance
    ``(x - mean)^T (x - mean) / N``, and ``filter_bias`` is added to every eigenvalue so that
    low-variance directions are not blown up. The whitened training data then has covariance
    ``eig / (eig + filter_bias)`` in the eigenbasis. The inverse matrix
    ``U diag(sqrt(eig + filter_bias)) U^T`` is stored too, for ``inverse_transform``, unless
    ``store_inverse=False`` (then ``inverse_transform`` solves with ``W`` instead, and the weights
    file holds one matrix, not two).

    ``mean``, ``whitening`` and ``inverse`` are non-trainable weights, so a saved ``.keras`` file,
    a preset and an exported model carry them. Before ``adapt`` (or loading weights) the layer
    is the identity.

    Each example is flattened to ``d = prod(input_shape[1:])`` features (3072 for 32x32x3), so
    the matrices are ``d x d``. With ``matrix_dtype="float16"`` the two matrices are stored in
    float16, halving their size on disk (2 x 36 MiB -> 2 x 18 MiB at d=3072); compute stays in the
    layer's float32 (the matrices are cast up before the product).

    The matrix products ask for full float32 precision on every backend, never TF32 (on
    TensorFlow that switches TF32 off for the whole process; ``nin_keras.layers._precision``
    says how each backend is asked and why).

    Args:
        filter_bias: Added to the covariance eigenvalues (pylearn2's CIFAR value is 0.1).
        matrix_dtype: ``"float32"`` or ``"float16"``, storage dtype of the two matrices.
        store_inverse: Keep the inverse matrix as a weight (faster ``inverse_transform``).
        **kwargs: Base ``keras.layers.Layer`` arguments.

    Input shape:
        ``(batch, d1, ..., dk)`` with known ``d1..dk``, the same shape the layer was adapted on.

    Output shape:
        Same as the input, in the compute dtype.

    Example:
        >>> gcn = GlobalContrastNormalization(scale=55.0)
        >>> zca = ZCAWhitening(filter_bias=0.1)
        >>> zca.adapt(train_images.map(gcn))        # tf.data of batches, or a NumPy array
        >>> whitened = zca(gcn(images))
        >>> images_back = zca.inverse_transform(whitened)
    """

    def __init__(self, filter_bias: float = 0.1, matrix_dtype: str = "float32",
                 store_inverse: bool = True, **kwargs):
        super().__init__(**kwargs)
        if not filter_bias >= 0:
            raise ValueError(f"filter_bias must be >= 0, got {filter_bias}")
        self.filter_bias = float(filter_bias)
        self.matrix_dtype = choice(matrix_dtype, _MATRIX_DTYPES, "matrix_dtype")
        self.store_inverse = bool(store_inverse)

    def build(self, input_shape):
        if len(input_shape) < 2 or any(dim is None for dim in input_shape[1:]):
            raise ValueError(f"{self.name} needs a batch input with known non-batch dimensions, "
                             f"got input shape {tuple(input_shape)}")
        self._feature_shape = tuple(int(dim) for dim in input_shape[1:])
        size = math.prod(self._feature_shape)
        self.input_spec = keras.layers.InputSpec(shape=(None, *self._feature_shape))
        self.mean = self.add_weight(name="mean", shape=(size,), initializer="zeros",
                                    trainable=False)
        self.whitening = self.add_weight(name="whitening", shape=(size, size),
                                         initializer="identity", trainable=False,
                                         dtype=self.matrix_dtype)
        self.inverse = None
        if self.store_inverse:
            self.inverse = self.add_weight(name="inverse", shape=(size, size),
                                           initializer="identity", trainable=False,
                                           dtype=self.matrix_dtype)

    def adapt(self, data: Any, steps: int | None = None) -> "ZCAWhitening":
        """Fit ``mean`` and the matrices on ``data``, streaming over batches.

        Args:
            data: A NumPy array ``(N, d1, ..., dk)`` (processed in chunks), or a ``tf.data.Dataset``
                whose elements are batches of examples or ``(examples, labels)`` tuples. Sums and
                ``x^T x`` are accumulated in float64 (``d x d`` float64: 75 MiB at d=3072), so the
                data set itself never has to be held in memory as float64.
            steps: Read at most this many batches from a dataset.

        Returns:
            The layer, adapted.

        Raises:
            ValueError: No examples, non-finite values, a shape that differs from the built one,
                or a covariance that is not positive definite after adding ``filter_bias``.
        """
        count, total, gram = 0, None, None
        for batch in _iter_batches(data, steps):
            flat = batch.reshape(batch.shape[0], -1).astype(np.float64)
            if not np.all(np.isfinite(flat)):
                raise ValueError(f"{self.name}.adapt: data contains NaN or infinite values")
            if total is None:
                if not self.built:
                    self.build((None, *batch.shape[1:]))
                total = np.zeros(flat.shape[1])
                gram = np.zeros((flat.shape[1], flat.shape[1]))
            if batch.shape[1:] != self._feature_shape:
                raise ValueError(f"{self.name}.adapt: examples have shape {batch.shape[1:]}, "
                                 f"expected {self._feature_shape}")
            count += flat.shape[0]
            total += flat.sum(axis=0)
            gram += flat.T @ flat
        if count == 0:
            raise ValueError(f"{self.name}.adapt: no examples in data")
        mean = total / count
        covariance = gram / count - np.outer(mean, mean)
        eigenvalues, eigenvectors = np.linalg.eigh(covariance + self.filter_bias * np.eye(len(mean)))
        if eigenvalues.min() <= 0:
            raise ValueError(f"{self.name}.adapt: covariance + filter_bias is not positive definite "
                             f"(smallest eigenvalue {eigenvalues.min():.3g}); use filter_bias > 0")
        self.mean.assign(mean.astype(self.mean.dtype))
        self.whitening.assign(((eigenvectors / np.sqrt(eigenvalues)) @ eigenvectors.T)
                              .astype(self.matrix_dtype))
        if self.store_inverse:
            self.inverse.assign(((eigenvectors * np.sqrt(eigenvalues)) @ eigenvectors.T)
                                .astype(self.matrix_dtype))
        return self

    def call(self, inputs):
        x = ops.reshape(ops.cast(inputs, self.compute_dtype), (-1, self.mean.shape[0]))
        whitening = ops.cast(self.whitening, self.compute_dtype)
        with float32_precision():
            y = ops.matmul(x - ops.cast(self.mean, self.compute_dtype), whitening)
        return ops.reshape(y, (-1, *self._feature_shape))

    def inverse_transform(self, inputs):
        """Undo the whitening: ``x = y @ inverse + mean`` (for visualizing whitened images)."""
        y = ops.reshape(ops.cast(inputs, self.compute_dtype), (-1, self.mean.shape[0]))
        with float32_precision():
            if self.store_inverse:
                x = ops.matmul(y, ops.cast(self.inverse, self.compute_dtype))
            else:  # W is symmetric, so x = y W^-1 is the transpose of solve(W, y^T)
                x = ops.transpose(ops.solve(ops.cast(self.whitening, self.compute_dtype), ops.transpose(y)))
        return ops.reshape(x + ops.cast(self.mean, self.compute_dtype), (-1, *self._feature_shape))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(filter_bias=self.filter_bias, matrix_dtype=self.matrix_dtype,
                      store_inverse=self.store_inverse)
        return config


def _iter_batches(data: Any, steps: int | None, chunk: int = 2048):
    """Yield NumPy batches from an array (in chunks) or from a dataset of batches."""
    if isinstance(data, np.ndarray) or not hasattr(data, "as_numpy_iterator"):
        array = np.asarray(data)
        if array.ndim < 2:
            raise ValueError(f"adapt data must have rank >= 2 (examples first), got shape {array.shape}")
        for start in range(0, len(array), chunk):
            yield array[start:start + chunk]
        return
    for index, element in enumerate(data.as_numpy_iterator()):
        if steps is not None and index >= steps:
            break
        batch = element[0] if isinstance(element, tuple) else element
        if batch.ndim < 2:
            raise ValueError(f"adapt expects a dataset of batches (rank >= 2), got an element of "
                             f"shape {batch.shape}; call .batch(n) on the dataset first")
        yield batch
