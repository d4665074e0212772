"""Receptive fields: the input region a unit of a layer sees, from the layers' window geometry."""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np

from nin_keras.visualize.deconv_chain import layer_window, network_start
from nin_keras.visualize.layer_chain import find_layer, flatten_chain


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
    start = network_start(chain, target)
    shape = tuple(model.input_shape)  # preprocessing keeps the shape
    sizes = []  # (in_size, out_size) of each network layer up to the target
    for each in chain[start : target + 1]:
        out = tuple(each.compute_output_shape(shape))
        sizes.append((shape[1:3], out[1:3]))
        shape = out
    low, high = np.array(position, dtype=int), np.array(position, dtype=int)
    for each, size in reversed(list(zip(chain[start : target + 1], sizes))):
        window = layer_window(each)
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
