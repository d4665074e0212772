"""The deconvnet's reverse pass: one activation run back through the network to its input.

Each max pooling is undone by unpooling with the switches recorded on the forward pass, each
ReLU by rectifying the signal going back, each convolution by its transposed filters, each
average pooling by spreading a value evenly over its window (see ``nin_keras.visualize.deconvnet``).
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
from nin_keras.tensorflow_only import import_tensorflow

tf = import_tensorflow(__name__)

from nin_keras.layers import CaffePooling2D, MLPConv
from nin_keras.visualize.deconv_chain import (
    is_max_pooling,
    layer_window,
    network_start,
    rectifies,
    strongest_positions,
)
from nin_keras.visualize.layer_chain import find_layer, flatten_chain, run_chain


def max_pool_switches(layer: keras.layers.Layer, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each window of a max-pooling ``layer`` finds its maximum in ``inputs`` (the "switches").

    Positions outside the input (padding, or windows clipped at the border) never win. Ties go to
    the first position in row-major order, as in Caffe and TensorFlow.

    Args:
        layer: a ``MaxPooling2D`` or a max ``CaffePooling2D`` (channels last).
        inputs: its input ``(N, H, W, C)``.

    Returns:
        ``(rows, cols)``: two int arrays of the layer's output shape ``(N, out_rows, out_cols, C)``,
        the input coordinates of each window's maximum.

    Example:
        >>> rows, cols = max_pool_switches(CaffePooling2D(3, 2), x)
        >>> pooled = x[np.arange(len(x))[:, None, None, None], rows, cols, np.arange(x.shape[3])]
    """
    if not is_max_pooling(layer):
        raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) is not a max pooling layer")
    window = layer_window(layer)
    out_size = layer.compute_output_shape(inputs.shape)[1:3]
    (kh, kw), (sh, sw) = window.size, window.strides
    (out_h, out_w), (height, width) = out_size, inputs.shape[1:3]
    top, left = window.pad_before((height, width), out_size)
    bottom = max((out_h - 1) * sh + kh - height - top, 0)
    right = max((out_w - 1) * sw + kw - width - left, 0)
    padded = np.pad(inputs, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=-np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(1, 2))
    windows = windows[:, ::sh, ::sw][:, :out_h, :out_w]  # (N, out_h, out_w, C, kh, kw)
    winner = windows.reshape(*windows.shape[:4], kh * kw).argmax(axis=-1)
    rows = np.arange(out_h)[None, :, None, None] * sh + winner // kw - top
    cols = np.arange(out_w)[None, None, :, None] * sw + winner % kw - left
    return rows, cols


def _unpool(signal: np.ndarray, switches: tuple[np.ndarray, np.ndarray], in_shape: Sequence[int]) -> np.ndarray:
    """Put each pooled value back at its switch position; overlapping windows add up."""
    rows, cols = switches
    out = np.zeros(in_shape, dtype=signal.dtype)
    batch = np.arange(signal.shape[0])[:, None, None, None]
    channel = np.arange(signal.shape[3])[None, None, None, :]
    np.add.at(out, (batch, rows, cols, channel), signal)
    return out


def _conv_transpose(signal: np.ndarray, kernel, strides: Sequence[int], padding: str, in_shape: Sequence[int]) -> np.ndarray:
    """Apply a convolution's transposed filters: maps its output space back onto its input."""
    return tf.nn.conv2d_transpose(
        signal, keras.ops.convert_to_numpy(kernel), output_shape=tuple(in_shape),
        strides=(1, *strides, 1), padding=padding.upper(),
    ).numpy()


def _batch_norm_scale(norm: keras.layers.BatchNormalization) -> np.ndarray:
    """The per-channel factor of an inference-mode batch normalization (its linear part)."""
    scale = 1.0 / np.sqrt(keras.ops.convert_to_numpy(norm.moving_variance) + norm.epsilon)
    if norm.gamma is not None:
        scale = scale * keras.ops.convert_to_numpy(norm.gamma)
    return scale


def _reverse(layer: keras.layers.Layer, signal: np.ndarray, inputs: np.ndarray, switches) -> np.ndarray:
    """Run one layer backwards, deconvnet style: from its output space to its input space.

    ``inputs`` is the layer's input on the forward pass; ``switches`` its recorded max-pooling
    switches (None for other layers).
    """
    if isinstance(layer, MLPConv):
        last = len(layer.kernels) - 1
        for i in range(last, -1, -1):
            if rectifies(layer.activation, layer.name) and not (layer.linear_last and i == last):
                signal = np.maximum(signal, 0.0)
            if layer.batch_norm:
                signal = signal * _batch_norm_scale(layer.norms[i])
            kernel = layer.kernels[i]
            if i == 0:
                signal = _conv_transpose(signal, kernel, layer.strides, layer.padding, inputs.shape)
            else:
                signal = _conv_transpose(signal, kernel, (1, 1), "valid", (*signal.shape[:3], kernel.shape[2]))
        return signal
    if isinstance(layer, keras.layers.Conv2D):
        if rectifies(layer.activation, layer.name):
            signal = np.maximum(signal, 0.0)
        return _conv_transpose(signal, layer.kernel, layer.strides, layer.padding, inputs.shape)
    if is_max_pooling(layer):
        return _unpool(signal, switches, inputs.shape)
    if isinstance(layer, (CaffePooling2D, keras.layers.AveragePooling2D)):
        # Average pooling is linear: its transpose (the gradient) spreads each value evenly
        # over its window, with the layer's own divisor.
        x = tf.constant(inputs)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
        return tape.gradient(y, x, output_gradients=tf.constant(signal)).numpy()
    if isinstance(layer, keras.layers.ReLU):
        return np.maximum(signal, 0.0)
    if isinstance(layer, keras.layers.Activation):
        return np.maximum(signal, 0.0) if rectifies(layer.activation, layer.name) else signal
    if isinstance(layer, keras.layers.BatchNormalization):
        return signal * _batch_norm_scale(layer)
    return signal  # dropout and friends: identity at inference


def deconv_projection(
    model: keras.Model,
    images: np.ndarray,
    layer: str,
    channel: int,
    positions: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Project one activation per image of ``layer``'s ``channel`` back to the input space.

    On the forward pass the max-pooling switches are recorded; then the feature maps of ``layer``
    are zeroed except the chosen activation (its strongest in ``channel`` by default), and the
    deconvnet runs from there down to the network's input.

    Args:
        model: a chain of supported layers (see ``nin_keras.visualize.deconvnet``), e.g. a NIN or
            an inference model holding one.
        images: batch ``(N, H, W, C)`` in whatever form ``model`` takes.
        layer: name of the layer whose output is projected, e.g. ``"mlpconv2"``.
        channel: feature-map index in that layer's output.
        positions: ``(N, 2)`` (row, col) of the activation to project for each image; default the
            strongest activation of ``channel`` in each image.

    Returns:
        ``(projections, positions)``: projections of the network input's shape (that is the
        images' shape, since preprocessing keeps it), and the ``(N, 2)`` positions projected.

    Raises:
        ValueError: unknown layer, channel out of range, or a layer on the way the deconvnet
            cannot reverse (the message names it).

    Example:
        >>> projections, where = deconv_projection(model, images, "mlpconv2", channel=17)
        >>> projections.shape == images.shape
        True
    """
    chain = flatten_chain(model)
    target = find_layer(chain, layer)
    start = network_start(chain, target)
    outputs = run_chain(chain, images, stop=target)
    activations = outputs[target + 1]
    if activations.ndim != 4:
        raise ValueError(f"layer={layer!r}: its output has shape {activations.shape}, not feature maps")
    if not 0 <= channel < activations.shape[-1]:
        raise ValueError(f"channel={channel}: layer {layer!r} has {activations.shape[-1]} channels")
    if positions is None:
        positions = strongest_positions(activations[..., channel])
    positions = np.asarray(positions, dtype=int).reshape(-1, 2)
    if len(positions) != len(activations):
        raise ValueError(f"positions: expected {len(activations)} (row, col) pairs, got {len(positions)}")
    switches = {i: max_pool_switches(chain[i], outputs[i]) for i in range(start, target + 1) if is_max_pooling(chain[i])}
    batch = np.arange(len(positions))
    signal = np.zeros_like(activations)
    signal[batch, positions[:, 0], positions[:, 1], channel] = activations[batch, positions[:, 0], positions[:, 1], channel]
    for i in range(target, start - 1, -1):
        signal = _reverse(chain[i], signal, outputs[i], switches.get(i))
    return signal, positions
