"""The deconvnet's figures: projections beside their images (``plot_deconv``) and the top-k
projections beside their image patches (``plot_top_patches``)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import keras
import numpy as np
from matplotlib.patches import Rectangle

from nin_keras.layers import ZCAWhitening
from nin_keras.visualize import rendering
from nin_keras.visualize.activation_search import top_activations
from nin_keras.visualize.deconv_chain import network_start
from nin_keras.visualize.layer_chain import find_layer, flatten_chain
from nin_keras.visualize.receptive_fields import receptive_field
from nin_keras.visualize.reverse_pass import deconv_projection


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
    start = network_start(chain, find_layer(chain, layer))
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
