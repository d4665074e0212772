"""Shared drawing helpers: headless matplotlib figures of exact pixel size, saved atomically.

Figures are ``matplotlib.figure.Figure`` objects drawn straight to PNG (Agg), never through
``pyplot``: no display is needed and the caller's matplotlib backend and state are left alone.
Most pictures are grids of square cells, ``cell`` pixels each, so a figure with ``rows × cols``
cells is exactly ``cols * cell`` by ``rows * cell`` pixels.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from nin_keras.io_utils import atomic_write

DEFAULT_OUTPUT_DIR = "nin_keras_visualize"
"""Folder the PNG files go to when no path is given (relative to the working directory)."""

DPI = 100


def output_path(path: str | os.PathLike | None, default_name: str) -> Path:
    """Where a picture goes: ``path`` if it names a ``.png`` file, else ``<path>/<default_name>``.

    ``path=None`` means the folder ``nin_keras_visualize`` in the working directory.
    """
    if path is None:
        return Path(DEFAULT_OUTPUT_DIR) / default_name
    path = Path(path)
    return path if path.suffix.lower() == ".png" else path / default_name


def font_size(cell: int) -> int:
    """Title font size (points) for cells of ``cell`` pixels."""
    return max(5, cell // 14)


def new_figure(width: int, height: int) -> Figure:
    """An empty figure of exactly ``width × height`` pixels."""
    return Figure(figsize=(width / DPI, height / DPI), dpi=DPI)


def new_grid(rows: int, cols: int, cell: int) -> tuple[Figure, np.ndarray]:
    """A figure of ``rows × cols`` axes in cells of ``cell`` pixels square, ticks hidden.

    Args:
        rows, cols: grid size.
        cell: pixels per cell (at least 16); the figure is ``cols * cell`` by ``rows * cell``.
            Each cell keeps room above its axes for a two-line title of :func:`font_size`.

    Returns:
        ``(figure, axes)`` with ``axes`` of shape ``(rows, cols)``.
    """
    if cell < 16:
        raise ValueError(f"cell={cell}: a cell must be at least 16 pixels")
    fig = new_figure(cols * cell, rows * cell)
    axes = fig.subplots(rows, cols, squeeze=False)
    title = (2.5 * font_size(cell) + 8) * DPI / 72  # two lines plus matplotlib's title pad, in pixels
    fig.subplots_adjust(
        left=0.01, right=0.99, bottom=0.01, top=1 - title / (rows * cell), wspace=0.08, hspace=title / (cell - title)
    )
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig, axes


def save_png(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a PNG at ``path`` (atomically, folders created)."""
    path = Path(path)
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return path


def to_unit_range(images: np.ndarray, per_image: bool = True) -> np.ndarray:
    """Linearly stretch values to ``[0, 1]`` (per image by default) for display.

    A constant image maps to 0.5 rather than dividing by zero.
    """
    x = np.asarray(images, dtype="float32")
    axes = tuple(range(1, x.ndim)) if per_image and x.ndim > 1 else None
    low = x.min(axis=axes, keepdims=True)
    span = x.max(axis=axes, keepdims=True) - low
    return np.where(span > 0, (x - low) / np.where(span > 0, span, 1.0), 0.5)


def centered(values: np.ndarray) -> np.ndarray:
    """Signed arrays (filters, projections) to ``[0, 1]``, per item: zero is mid-grey and the
    largest magnitude reaches 0 or 1."""
    x = np.asarray(values, dtype="float32")
    extent = np.abs(x).reshape(len(x), -1).max(axis=1).reshape(-1, *[1] * (x.ndim - 1))
    return 0.5 + 0.5 * x / np.where(extent > 0, extent, 1.0)


def display_images(images: np.ndarray, whitening: keras.layers.Layer | None = None) -> np.ndarray:
    """Images as floats in ``[0, 1]``, shape ``(N, H, W, C)``, ready for ``imshow``.

    Args:
        images: raw images with values in ``[0, 255]`` (what an inference model takes), or, with
            ``whitening``, images already passed through that whitening layer.
        whitening: the ``ZCAWhitening`` layer that produced ``images``; they are un-whitened with
            its ``inverse_transform`` and stretched per image (GCN removed their brightness scale).
    """
    x = np.asarray(images, dtype="float32")
    if x.ndim != 4:
        raise ValueError(f"images: expected shape (N, H, W, C), got {x.shape}")
    if whitening is not None:
        return to_unit_range(np.asarray(whitening.inverse_transform(x)))
    return np.clip(x / 255.0, 0.0, 1.0)


def show_image(ax: Axes, image: np.ndarray) -> None:
    """Draw one ``(H, W, C)`` image in ``[0, 1]``; one channel is drawn in grey."""
    if image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(image, interpolation="nearest")


def upsample(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of ``(N, h, w, K)`` maps to ``(N, size[0], size[1], K)``."""
    import tensorflow as tf

    maps = np.asarray(maps, dtype="float32")
    return tf.image.resize(maps, size, method="bilinear").numpy()


def overlay(ax: Axes, image: np.ndarray, heat: np.ndarray, vmin: float, vmax: float) -> None:
    """Draw ``image`` (``(H, W, C)`` in ``[0, 1]``) with ``heat`` (``(H, W)``) on top in jet."""
    show_image(ax, image)
    ax.imshow(heat, cmap="jet", alpha=0.5, vmin=vmin, vmax=vmax, interpolation="bilinear")


def mark(ax: Axes, color: str) -> None:
    """Frame an axes in ``color`` (used for the true and the predicted class)."""
    for spine in ax.spines.values():
        spine.set_edgecolor(color)
        spine.set_linewidth(3)
