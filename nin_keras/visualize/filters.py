"""The first convolution's filters as an image grid (each k×k×C kernel drawn as a small image)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import keras
import numpy as np

from nin_keras.layers import MLPConv
from nin_keras.visualize import rendering
from nin_keras.visualize.layer_chain import find_layer, flatten_chain


def first_layer_filters(model: keras.Model, layer: str | None = None) -> tuple[str, np.ndarray]:
    """The kernel of the first convolution of ``model`` (or of the convolution ``layer``).

    For an ``MLPConv`` this is its k×k convolution (``kernel_0``).

    Returns:
        ``(layer name, kernel)``, the kernel of shape ``(kh, kw, in_channels, filters)``.

    Raises:
        ValueError: no such layer, or the layer is not ``Conv2D``/``MLPConv``.
    """
    chain = flatten_chain(model)
    if layer is None:
        convs = [each for each in chain if isinstance(each, (MLPConv, keras.layers.Conv2D))]
        if not convs:
            raise ValueError(f"model {model.name!r} has no Conv2D or MLPConv layer to draw filters of")
        found = convs[0]
    else:
        found = chain[find_layer(chain, layer)]
        if not isinstance(found, (MLPConv, keras.layers.Conv2D)):
            raise ValueError(f"layer={layer!r} is a {type(found).__name__}, not a Conv2D or MLPConv")
    kernel = found.kernels[0] if isinstance(found, MLPConv) else found.kernel
    return found.name, keras.ops.convert_to_numpy(kernel)


def plot_filters(
    model: keras.Model,
    layer: str | None = None,
    path: str | os.PathLike | None = None,
    cell: int = 32,
) -> Path:
    """Draw every filter of the first convolution as a small image, in a near-square grid.

    Each filter is scaled on its own so zero is mid-grey and its largest weight reaches black or
    white (colour for 3 input channels, grey for 1). They act on the network's input, i.e. on
    preprocessed (e.g. whitened) images.

    Args:
        model: any model with a ``Conv2D`` or ``MLPConv``.
        layer: name of the convolution to draw; the first one by default.
        path: a ``.png`` file, or a folder for the file ``filters_<layer>.png``; default the folder
            ``nin_keras_visualize``.
        cell: pixels per filter; the PNG is ``cols * cell`` by ``rows * cell`` with
            ``cols = ceil(sqrt(filters))`` and ``rows = ceil(filters / cols)``.

    Returns:
        The path written.

    Raises:
        ValueError: the kernel has neither 1 nor 3 input channels (it cannot be drawn as an image).
    """
    name, kernel = first_layer_filters(model, layer)
    channels, count = kernel.shape[2], kernel.shape[3]
    if channels not in (1, 3):
        raise ValueError(f"layer {name!r}: filters with {channels} input channels cannot be drawn as images")
    shown = rendering.centered(np.moveaxis(kernel, -1, 0))  # (filters, kh, kw, channels)
    cols = math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    # One mosaic image (filters separated by a white line) draws much faster than one axes each.
    kh, kw = shown.shape[1:3]
    mosaic = np.ones((rows * (kh + 1) - 1, cols * (kw + 1) - 1, channels), dtype="float32")
    for n in range(count):
        row, col = divmod(n, cols)
        mosaic[row * (kh + 1) : row * (kh + 1) + kh, col * (kw + 1) : col * (kw + 1) + kw] = shown[n]
    fig = rendering.new_figure(cols * cell, rows * cell)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    rendering.show_image(ax, mosaic)
    ax.set_aspect("auto")
    return rendering.save_png(fig, rendering.output_path(path, f"filters_{name}.png"))
