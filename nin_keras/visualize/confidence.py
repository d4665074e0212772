"""Class confidence maps of Network in Network (Lin et al. 2014, Section 4.7 and Figure 4).

A NIN ends in one feature map per class, and its global-average-pooling head scores each class by
that map's mean; the maps therefore show where in the image the network sees each class. This
module extracts them for a batch of images and draws the paper's grid: one row per image, one
column per class, each map upsampled to the image and laid over it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import keras
import numpy as np

from nin_keras.layers import GlobalAveragePoolingHead
from nin_keras.visualize import rendering
from nin_keras.visualize.layer_chain import flatten_chain, run_chain


def class_confidence_maps(model: keras.Model, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The per-class maps that feed a NIN's ``GlobalAveragePoolingHead``, and the predictions.

    Args:
        model: a NIN (or an inference model holding one) whose layers form a chain ending in a
            ``GlobalAveragePoolingHead``.
        images: batch in whatever form ``model`` takes, shape ``(N, H, W, C)``.

    Returns:
        ``(maps, predictions)``: maps of shape ``(N, h, w, classes)`` (the last mlpconv's output),
        and ``model``'s output ``(N, classes)`` (probabilities with a softmax head). The spatial
        mean of ``maps[..., k]`` is class ``k``'s logit.

    Raises:
        ValueError: ``model`` has no ``GlobalAveragePoolingHead`` (for a GAP + Dense model use
            :func:`nin_keras.visualize.cam.class_activation_maps`).

    Example:
        >>> maps, probabilities = class_confidence_maps(model, images)
        >>> maps.shape
        (8, 8, 8, 10)
    """
    chain = flatten_chain(model)
    heads = [i for i, layer in enumerate(chain) if isinstance(layer, GlobalAveragePoolingHead)]
    if not heads:
        raise ValueError(
            f"model {model.name!r} has no GlobalAveragePoolingHead, so it has no per-class "
            "confidence maps; for a global-average-pooling + Dense model use class activation maps "
            "(nin_keras.visualize.cam)"
        )
    outputs = run_chain(chain, images)
    return outputs[heads[-1]], outputs[-1]


def plot_class_maps(
    images: np.ndarray,
    maps: np.ndarray,
    predictions: np.ndarray,
    path: str | os.PathLike,
    labels: Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
    classes: Sequence[int] | None = None,
    cell: int = 96,
) -> Path:
    """Draw a grid of per-class maps over their images (rows: images; columns: input, classes).

    Each row's maps share one colour scale, so the brightest column is the class whose map is
    strongest there. Frames mark the true class (green), the predicted class (red), or both when
    they agree (gold).

    Args:
        images: images to draw under the maps, floats in ``[0, 1]``, shape ``(N, H, W, C)``
            (see :func:`rendering.display_images`).
        maps: per-class maps ``(N, h, w, K)``, upsampled here to ``(H, W)``.
        predictions: ``(N, K)`` scores; their argmax is the predicted class.
        path: destination PNG.
        labels: true classes, one per image, or None.
        class_names: ``K`` names for the column titles; indices are shown otherwise.
        classes: which class columns to draw; all of them by default when ``K <= 10``, else the
            predicted and true classes of the batch (at most 10).
        cell: size in pixels of each square cell; the PNG is ``(1 + len(classes)) * cell`` wide
            and ``N * cell`` high.

    Returns:
        The path written.
    """
    images = np.asarray(images, dtype="float32")
    maps = np.asarray(maps, dtype="float32")
    predicted = np.argmax(predictions, axis=-1)
    count, height, width = images.shape[:3]
    if maps.ndim != 4 or maps.shape[0] != count:
        raise ValueError(f"maps: expected shape ({count}, h, w, classes), got {maps.shape}")
    num_classes = maps.shape[-1]
    if labels is not None and len(labels) != count:
        raise ValueError(f"labels: expected {count} labels, got {len(labels)}")
    if classes is None:
        if num_classes <= 10:
            classes = list(range(num_classes))
        else:
            shown = set(predicted.tolist()) | set([] if labels is None else [int(v) for v in labels])
            classes = sorted(shown)[:10]
    classes = [int(k) for k in classes]
    if any(not 0 <= k < num_classes for k in classes):
        raise ValueError(f"classes: indices must be in [0, {num_classes}), got {classes}")
    names = list(class_names) if class_names is not None else [str(k) for k in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"class_names: expected {num_classes} names, got {len(names)}")

    heat = rendering.upsample(maps[..., classes], (height, width))
    fig, axes = rendering.new_grid(count, 1 + len(classes), cell)
    font = rendering.font_size(cell)
    for row in range(count):
        rendering.show_image(axes[row, 0], images[row])
        truth = None if labels is None else int(labels[row])
        caption = f"pred {names[predicted[row]]}"
        if truth is not None:
            caption = f"true {names[truth]}\n{caption}"
        axes[row, 0].set_title(caption, fontsize=font)
        low, high = float(heat[row].min()), float(heat[row].max())
        for col, k in enumerate(classes, start=1):
            ax = axes[row, col]
            rendering.overlay(ax, images[row], heat[row, ..., col - 1], low, high)
            if row == 0:
                ax.set_title(names[k], fontsize=font)
            if k == predicted[row] and k == truth:
                rendering.mark(ax, "gold")
            elif k == predicted[row]:
                rendering.mark(ax, "red")
            elif k == truth:
                rendering.mark(ax, "lime")
    return rendering.save_png(fig, path)


def plot_confidence_maps(
    model: keras.Model,
    images: np.ndarray,
    path: str | os.PathLike | None = None,
    labels: Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
    classes: Sequence[int] | None = None,
    whitening: keras.layers.Layer | None = None,
    cell: int = 96,
) -> Path:
    """Compute a NIN's class confidence maps for ``images`` and draw them as the paper's Figure 4.

    Args:
        model: see :func:`class_confidence_maps`.
        images: batch ``(N, H, W, C)`` as ``model`` takes it: raw ``[0, 255]`` pixels for an
            inference model (shown as they are), or whitened images together with ``whitening``.
        path: a ``.png`` file, or a folder for the file ``confidence_maps.png``; default the folder
            ``nin_keras_visualize``.
        labels, class_names, classes, cell: see :func:`plot_class_maps`.
        whitening: the ``ZCAWhitening`` layer that whitened ``images``, to show them un-whitened.

    Returns:
        The path written.

    Example:
        >>> plot_confidence_maps(model, images, labels=labels, class_names=CIFAR10_CLASSES)
        PosixPath('nin_keras_visualize/confidence_maps.png')
    """
    maps, predictions = class_confidence_maps(model, images)
    return plot_class_maps(
        rendering.display_images(images, whitening),
        maps,
        predictions,
        rendering.output_path(path, "confidence_maps.png"),
        labels=labels,
        class_names=class_names,
        classes=classes,
        cell=cell,
    )
