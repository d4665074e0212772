"""The top-activation search: the images that excite one channel of a layer most (Zeiler & Fergus's top-9)."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from nin_keras.visualize.deconv_chain import strongest_positions
from nin_keras.visualize.layer_chain import find_layer, flatten_chain, run_chain


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
        where = strongest_positions(maps[..., channel])
        values.append(maps[np.arange(len(where)), where[:, 0], where[:, 1], channel])
        positions.append(where)
    values, positions = np.concatenate(values), np.concatenate(positions)
    best = np.argsort(-values, kind="stable")[:k]
    return [TopActivation(int(i), float(values[i]), (int(positions[i, 0]), int(positions[i, 1]))) for i in best]
