"""Deconvnet projections (Zeiler & Fergus 2014, "Visualizing and Understanding Convolutional Networks").

One activation of a chosen layer is mapped back to the network's input by running the network
backwards: each max pooling is undone by *unpooling* with the *switches* recorded on the forward
pass (a value goes back to the position that won its window), each ReLU by *rectifying* the signal
going back, and each convolution by its *transposed filters* (``conv2d_transpose`` with the same
kernel, no bias). Average pooling hands each value back to its window evenly. The result, with the
input's shape, shows which input pattern excites that activation; it is non-zero only inside the
unit's receptive field.

Supported layers: ``MLPConv`` (its k×k and 1×1 convolutions, with or without batch
normalization), ``CaffePooling2D`` (max and average), Keras ``Conv2D``, ``MaxPooling2D``,
``AveragePooling2D``, ``BatchNormalization``, ``ReLU``/``Activation`` and dropout layers. Preprocessing
layers in front of the network (GCN, ZCA, LCN, rescaling) are where the projection stops: it is
an image in the network's input space (for a whitened model, a whitened image; the drawing
functions un-whiten it).
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Sequence

import keras
import numpy as np
from nin_keras.tensorflow_only import import_tensorflow

tf = import_tensorflow(__name__)
from matplotlib.patches import Rectangle

from nin_keras.layers import CaffePooling2D, MLPConv, RandomPadCrop, ZCAWhitening
from nin_keras.visualize import rendering
from nin_keras.visualize.layer_chain import find_layer, flatten_chain, run_chain
from nin_keras.zoo.classifier import PREPROCESSING_LAYERS

# Augmentation layers of a training stack are skipped like the classifier's preprocessing.
_PREPROCESSING = (*PREPROCESSING_LAYERS, RandomPadCrop)
# Identity at inference: the signal passes back unchanged.
_IDENTITY = (
    keras.layers.Dropout, keras.layers.SpatialDropout2D, keras.layers.GaussianNoise,
    keras.layers.GaussianDropout, keras.layers.AlphaDropout, keras.layers.ActivityRegularization,
)


@dataclasses.dataclass(frozen=True)
class _Window:
    """Sliding-window geometry of a convolution or pooling layer along (rows, cols)."""

    size: tuple[int, int]
    strides: tuple[int, int]
    padding: str  # "same" (TensorFlow's split padding) or "valid" (windows start at 0)

    def pad_before(self, in_size: Sequence[int], out_size: Sequence[int]) -> tuple[int, int]:
        """Rows/cols of implicit padding above/left of the input."""
        if self.padding == "valid":
            return (0, 0)
        return tuple(
            max((o - 1) * s + k - n, 0) // 2 for n, o, k, s in zip(in_size, out_size, self.size, self.strides)
        )


def _window(layer: keras.layers.Layer) -> _Window | None:
    """The layer's window geometry; None for layers that keep every position where it is."""
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise ValueError(f"layer {layer.name!r}: the deconvnet supports channels_last layers only")
    if isinstance(layer, MLPConv):
        return _Window(tuple(layer.kernel_size), tuple(layer.strides), layer.padding)
    if isinstance(layer, keras.layers.Conv2D):
        if tuple(layer.dilation_rate) != (1, 1) or layer.groups != 1:
            raise ValueError(f"layer {layer.name!r}: dilated or grouped convolutions are not supported")
        return _Window(tuple(layer.kernel_size), tuple(layer.strides), layer.padding)
    if isinstance(layer, CaffePooling2D):
        # Caffe pools without padding; windows past the bottom/right border are clipped.
        return _Window(tuple(layer.pool_size), tuple(layer.strides), "valid")
    if isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)):
        return _Window(tuple(layer.pool_size), tuple(layer.strides), layer.padding)
    if isinstance(layer, (*_IDENTITY, keras.layers.ReLU, keras.layers.BatchNormalization)):
        return None
    if isinstance(layer, keras.layers.Activation):
        _rectifies(layer.activation, layer.name)
        return None
    raise ValueError(
        f"layer {layer.name!r} ({type(layer).__name__}) cannot be run backwards by the deconvnet; "
        "supported: MLPConv, CaffePooling2D, Conv2D, MaxPooling2D, AveragePooling2D, "
        "BatchNormalization, ReLU/Activation, dropout"
    )


def _rectifies(activation, where: str) -> bool:
    """True for ReLU, False for the identity; other activations have no deconvnet rule."""
    name = getattr(activation, "__name__", str(activation))
    if name not in ("relu", "linear"):
        raise ValueError(f"layer {where!r}: activation {name!r} is not supported (ReLU or linear only)")
    return name == "relu"


def _is_preprocessing(layer: keras.layers.Layer) -> bool:
    # An inference model casts its uint8 input with a bare ``Cast`` operation before preprocessing.
    return isinstance(layer, _PREPROCESSING) or type(layer).__name__ == "Cast"


def _network_start(chain: Sequence[keras.layers.Layer], target: int) -> int:
    """Index of the first network layer: the one after the last preprocessing layer before ``target``."""
    preprocessing = [i for i in range(target) if _is_preprocessing(chain[i])]
    start = preprocessing[-1] + 1 if preprocessing else 0
    if start > target:
        raise ValueError(f"layer {chain[target].name!r} is a preprocessing layer, not part of the network")
    for layer in chain[start : target + 1]:
        _window(layer)  # raises for layers the deconvnet cannot reverse
    return start


def _is_max_pooling(layer: keras.layers.Layer) -> bool:
    return isinstance(layer, keras.layers.MaxPooling2D) or (isinstance(layer, CaffePooling2D) and layer.mode == "max")


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
    if not _is_max_pooling(layer):
        raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) is not a max pooling layer")
    window = _window(layer)
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
            if _rectifies(layer.activation, layer.name) and not (layer.linear_last and i == last):
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
        if _rectifies(layer.activation, layer.name):
            signal = np.maximum(signal, 0.0)
        return _conv_transpose(signal, layer.kernel, layer.strides, layer.padding, inputs.shape)
    if _is_max_pooling(layer):
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
        return np.maximum(signal, 0.0) if _rectifies(layer.activation, layer.name) else signal
    if isinstance(layer, keras.layers.BatchNormalization):
        return signal * _batch_norm_scale(layer)
    return signal  # dropout and friends: identity at inference


def _strongest_positions(maps: np.ndarray) -> np.ndarray:
    """``(N, 2)`` (row, col) of each map's maximum."""
    flat = maps.reshape(maps.shape[0], -1).argmax(axis=-1)
    return np.stack(np.unravel_index(flat, maps.shape[1:3]), axis=-1)


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
        model: a chain of supported layers (see the module docstring), e.g. a NIN or an inference
            model holding one.
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
    start = _network_start(chain, target)
    outputs = run_chain(chain, images, stop=target)
    activations = outputs[target + 1]
    if activations.ndim != 4:
        raise ValueError(f"layer={layer!r}: its output has shape {activations.shape}, not feature maps")
    if not 0 <= channel < activations.shape[-1]:
        raise ValueError(f"channel={channel}: layer {layer!r} has {activations.shape[-1]} channels")
    if positions is None:
        positions = _strongest_positions(activations[..., channel])
    positions = np.asarray(positions, dtype=int).reshape(-1, 2)
    if len(positions) != len(activations):
        raise ValueError(f"positions: expected {len(activations)} (row, col) pairs, got {len(positions)}")
    switches = {i: max_pool_switches(chain[i], outputs[i]) for i in range(start, target + 1) if _is_max_pooling(chain[i])}
    batch = np.arange(len(positions))
    signal = np.zeros_like(activations)
    signal[batch, positions[:, 0], positions[:, 1], channel] = activations[batch, positions[:, 0], positions[:, 1], channel]
    for i in range(target, start - 1, -1):
        signal = _reverse(chain[i], signal, outputs[i], switches.get(i))
    return signal, positions


def receptive_field(
    model: keras.Model, layer: str, position: Sequence[int]
) -> tuple[tuple[int, int], tuple[int, int]]:
    """The input region that unit ``position`` of ``layer`` sees, clipped to the image.

    Args:
        model: as for :func:`deconv_projection` (with a known input size).
        layer: layer name.
        position: ``(row, col)`` in that layer's output.

    Returns:
        ``((row_start, row_stop), (col_start, col_stop))``, half-open, in network-input pixels.

    Example:
        >>> receptive_field(nin, "pool1", (0, 0))   # 5x5 conv, then 3/2 pooling
        ((0, 5), (0, 5))
    """
    chain = flatten_chain(model)
    target = find_layer(chain, layer)
    start = _network_start(chain, target)
    shape = tuple(model.input_shape)  # preprocessing keeps the shape
    sizes = []  # (in_size, out_size) of each network layer up to the target
    for each in chain[start : target + 1]:
        out = tuple(each.compute_output_shape(shape))
        sizes.append((shape[1:3], out[1:3]))
        shape = out
    low, high = np.array(position, dtype=int), np.array(position, dtype=int)
    for each, size in reversed(list(zip(chain[start : target + 1], sizes))):
        window = _window(each)
        if window is None:
            continue
        pad = np.array(window.pad_before(*size))
        low = low * window.strides - pad
        high = high * window.strides - pad + np.array(window.size) - 1
    height, width = sizes[0][0]
    return (
        (max(int(low[0]), 0), min(int(high[0]) + 1, height)),
        (max(int(low[1]), 0), min(int(high[1]) + 1, width)),
    )


@dataclasses.dataclass(frozen=True)
class TopActivation:
    """One of the strongest activations of a channel over a set of images."""

    index: int  # which image
    value: float
    position: tuple[int, int]  # (row, col) in the layer's output


def top_activations(
    model: keras.Model, images: np.ndarray, layer: str, channel: int, k: int = 9, batch_size: int = 64
) -> list[TopActivation]:
    """The ``k`` images whose strongest activation of ``channel`` in ``layer`` is largest.

    Each image counts once, with its own strongest position (Zeiler & Fergus's top-9).

    Args:
        model, layer, channel: as for :func:`deconv_projection`.
        images: the image set ``(N, H, W, C)``, ``N >= k``.
        k: how many to return.
        batch_size: images per forward pass.

    Returns:
        ``k`` :class:`TopActivation`, strongest first.
    """
    if not 1 <= k <= len(images):
        raise ValueError(f"k={k}: must be between 1 and the number of images ({len(images)})")
    chain = flatten_chain(model)
    target = find_layer(chain, layer)
    values, positions = [], []
    for begin in range(0, len(images), batch_size):
        maps = run_chain(chain, images[begin : begin + batch_size], stop=target)[-1]
        if maps.ndim != 4 or not 0 <= channel < maps.shape[-1]:
            raise ValueError(f"channel={channel}: layer {layer!r} output has shape {maps.shape}")
        where = _strongest_positions(maps[..., channel])
        values.append(maps[np.arange(len(where)), where[:, 0], where[:, 1], channel])
        positions.append(where)
    values, positions = np.concatenate(values), np.concatenate(positions)
    best = np.argsort(-values, kind="stable")[:k]
    return [TopActivation(int(i), float(values[i]), (int(positions[i, 0]), int(positions[i, 1]))) for i in best]


def _unwhiten(projections: np.ndarray, whitening: ZCAWhitening) -> np.ndarray:
    """Map projections from whitened space back to image space: the inverse's linear part only
    (a projection is a pattern, not an image, so the data mean is not added back)."""
    p = np.asarray(projections, dtype="float32")
    return np.asarray(whitening.inverse_transform(p)) - np.asarray(whitening.inverse_transform(np.zeros_like(p)))


def _crop(images: np.ndarray, field: tuple[tuple[int, int], tuple[int, int]], size: tuple[int, int], fill: float) -> np.ndarray:
    """Cut ``field`` out of ``images``, padded with ``fill`` to the unclipped field ``size``."""
    (r0, r1), (c0, c1) = field
    out = np.full((len(images), *size, images.shape[-1]), fill, dtype="float32")
    top = size[0] - (r1 - r0) if r0 == 0 else 0
    left = size[1] - (c1 - c0) if c0 == 0 else 0
    out[:, top : top + r1 - r0, left : left + c1 - c0] = images[:, r0:r1, c0:c1]
    return out


def plot_deconv(
    model: keras.Model,
    images: np.ndarray,
    layer: str,
    channel: int,
    path: str | os.PathLike | None = None,
    whitening: keras.layers.Layer | None = None,
    cell: int = 96,
) -> Path:
    """Draw each image beside the projection of its strongest ``channel`` activation in ``layer``.

    Columns: the input (receptive field of the projected unit outlined); the projection in the
    network's input space (zero is grey, each stretched on its own); for a whitened model, the
    projection un-whitened into image space (it spreads beyond the field, as the inverse
    whitening is not local); then input and projection cropped to the receptive field.

    Args:
        model, images, layer, channel: as for :func:`deconv_projection`.
        path: a ``.png`` file, or a folder for the file ``deconv_<layer>_c<channel>.png``; default the folder
            ``nin_keras_visualize``.
        whitening: the ``ZCAWhitening`` that whitened ``images`` (they are shown un-whitened); by
            default the ``ZCAWhitening`` in the model's preprocessing, if any (its images are raw
            pixels, shown as they are).
        cell: pixels per square cell; the PNG is ``5 * cell`` wide with whitening (else
            ``4 * cell``) and ``N * cell`` high.

    Returns:
        The path written.
    """
    projections, positions = deconv_projection(model, images, layer, channel)
    shown = rendering.display_images(images, whitening)
    whitening = whitening or _model_whitening(model, layer)
    columns = [("input", None), ("projection", rendering.centered(projections))]
    if whitening is not None:
        columns.append(("un-whitened", rendering.centered(_unwhiten(projections, whitening))))
    fig, axes = rendering.new_grid(len(images), len(columns) + 2, cell)
    font = rendering.font_size(cell)
    for row, position in enumerate(positions):
        (r0, r1), (c0, c1) = receptive_field(model, layer, position)
        rendering.show_image(axes[row, 0], shown[row])
        axes[row, 0].add_patch(
            Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0, r1 - r0, fill=False, edgecolor="red", linewidth=1.5)
        )
        for col, (_, pictures) in enumerate(columns[1:], start=1):
            rendering.show_image(axes[row, col], pictures[row])
        rendering.show_image(axes[row, -2], shown[row, r0:r1, c0:c1])
        rendering.show_image(axes[row, -1], columns[1][1][row, r0:r1, c0:c1])
    for ax, (title, _) in zip(axes[0], [*columns, ("input, field", None), ("projection, field", None)]):
        ax.set_title(title, fontsize=font)
    default = f"deconv_{layer}_c{channel}.png"
    return rendering.save_png(fig, rendering.output_path(path, default))


def _model_whitening(model: keras.Model, layer: str) -> ZCAWhitening | None:
    """The ``ZCAWhitening`` among the preprocessing in front of the network, if any."""
    chain = flatten_chain(model)
    start = _network_start(chain, find_layer(chain, layer))
    found = [each for each in chain[:start] if isinstance(each, ZCAWhitening)]
    return found[-1] if found else None


def plot_top_patches(
    model: keras.Model,
    images: np.ndarray,
    layer: str,
    channel: int,
    k: int = 9,
    path: str | os.PathLike | None = None,
    whitening: keras.layers.Layer | None = None,
    cell: int = 96,
    batch_size: int = 64,
) -> Path:
    """Zeiler & Fergus's figure: projections of the top-``k`` activations beside their image patches.

    The ``k`` images that excite ``channel`` of ``layer`` most are found; each one's strongest
    activation is projected, and both the projection and the image are cut to that unit's
    receptive field. Left block: projections; right block: the image patches, in the same order
    (strongest first, row by row).

    Args:
        model, layer, channel: as for :func:`deconv_projection`.
        images: the image set searched, ``(N, H, W, C)``, ``N >= k``.
        k: how many patches (9 in the paper).
        path: a ``.png`` file, or a folder for the file ``top<k>_<layer>_c<channel>.png``; default the folder
            ``nin_keras_visualize``.
        whitening: the ``ZCAWhitening`` that whitened ``images``, to show their patches un-whitened.
        cell: pixels per cell; the PNG is ``2 * ceil(sqrt(k)) * cell`` wide and
            ``ceil(k / ceil(sqrt(k))) * cell`` high.
        batch_size: images per forward pass during the search.

    Returns:
        The path written.
    """
    top = top_activations(model, images, layer, channel, k=k, batch_size=batch_size)
    index = np.array([t.index for t in top])
    chosen = np.asarray(images)[index]
    projections, _ = deconv_projection(model, chosen, layer, channel, positions=np.array([t.position for t in top]))
    shown = rendering.display_images(chosen, whitening)
    shown_projections = rendering.centered(projections)
    fields = [receptive_field(model, layer, t.position) for t in top]
    # The unclipped field size: the largest one, reached away from the borders.
    size = (max(r1 - r0 for (r0, r1), _ in fields), max(c1 - c0 for _, (c0, c1) in fields))
    cols = math.ceil(math.sqrt(k))
    rows = math.ceil(k / cols)
    fig, axes = rendering.new_grid(rows, 2 * cols, cell)
    font = rendering.font_size(cell)
    for n, (t, field) in enumerate(zip(top, fields)):
        row, col = divmod(n, cols)
        rendering.show_image(axes[row, col], _crop(shown_projections[n : n + 1], field, size, 0.5)[0])
        rendering.show_image(axes[row, cols + col], _crop(shown[n : n + 1], field, size, 0.0)[0])
        axes[row, cols + col].set_title(f"#{t.index} {t.value:.3g}", fontsize=font)
    for n in range(k, rows * cols):
        row, col = divmod(n, cols)
        axes[row, col].set_visible(False)
        axes[row, cols + col].set_visible(False)
    default = f"top{k}_{layer}_c{channel}.png"
    return rendering.save_png(fig, rendering.output_path(path, default))
