"""Class activation maps (CAM; Zhou et al. 2016, "Learning Deep Features for Discriminative Localization").

For a network ending in global average pooling and one linear (Dense) layer, class ``c``'s score is
``sum_k w[k, c] * mean(f_k) + b_c``, so ``M_c = sum_k w[k, c] * f_k`` (the feature maps ``f_k``
before pooling, weighted by the class's Dense weights) is a map whose mean is the score without
bias. A NIN has no Dense layer: its last maps already are the class maps (``w`` is the
identity), so both kinds of model go through the same API.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import keras
import numpy as np

from nin_keras.layers import GlobalAveragePoolingHead
from nin_keras.visualize import rendering
from nin_keras.visualize.confidence import class_confidence_maps
from nin_keras.visualize.layer_chain import flatten_chain, run_chain

# Layers allowed between the pooling and the Dense layer, or after it: they do not mix channels.
_PASS_THROUGH = (keras.layers.Dropout, keras.layers.Activation, keras.layers.Softmax, keras.layers.Flatten)


def class_activation_maps(model: keras.Model, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class activation maps for every class, and the model's predictions.

    Args:
        model: a chain of layers ending either in a ``GlobalAveragePoolingHead`` (NIN), or in
            ``GlobalAveragePooling2D`` then one ``Dense`` (with only dropout/activation/flatten
            layers around it).
        images: batch in whatever form ``model`` takes, shape ``(N, H, W, C)``.

    Returns:
        ``(cams, predictions)``: ``cams`` of shape ``(N, h, w, classes)`` at the resolution of the
        last feature maps, and ``model``'s output ``(N, classes)``.

    Raises:
        ValueError: ``model`` has neither layout (e.g. a Maxout or fully connected network).

    Example:
        >>> cams, probabilities = class_activation_maps(model, images)
        >>> best = cams[np.arange(len(images)), ..., probabilities.argmax(-1)]
    """
    chain = flatten_chain(model)
    if any(isinstance(layer, GlobalAveragePoolingHead) for layer in chain):
        return class_confidence_maps(model, images)
    pool, dense = _gap_dense_layers(model, chain)
    outputs = run_chain(chain, images)
    features = outputs[pool]  # the input of the pooling layer: (N, h, w, channels)
    kernel = keras.ops.convert_to_numpy(chain[dense].kernel)  # (channels, classes)
    return np.einsum("nhwk,kc->nhwc", features, kernel), outputs[-1]


def _gap_dense_layers(model: keras.Model, chain: list[keras.layers.Layer]) -> tuple[int, int]:
    """Indices of the global average pooling layer and the Dense layer after it."""
    pools = [i for i, layer in enumerate(chain) if isinstance(layer, keras.layers.GlobalAveragePooling2D)]
    need = (
        f"model {model.name!r} cannot give class activation maps: CAM needs a "
        "GlobalAveragePoolingHead (NIN) or GlobalAveragePooling2D followed by exactly one Dense layer"
    )
    if not pools:
        raise ValueError(f"{need}, and it has no global average pooling")
    pool = pools[-1]
    if chain[pool].data_format != "channels_last" or chain[pool].keepdims:
        raise ValueError(f"{need}; layer {chain[pool].name!r} must be channels_last without keepdims")
    tail = chain[pool + 1 :]
    dense = [i for i, layer in enumerate(tail, start=pool + 1) if isinstance(layer, keras.layers.Dense)]
    others = [layer.name for layer in tail if not isinstance(layer, (keras.layers.Dense, *_PASS_THROUGH))]
    if len(dense) != 1 or others:
        raise ValueError(
            f"{need}; after {chain[pool].name!r} it has {[layer.name for layer in tail]}"
        )
    return pool, dense[0]


def plot_class_activation_maps(
    model: keras.Model,
    images: np.ndarray,
    path: str | os.PathLike | None = None,
    labels: Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
    top: int = 3,
    whitening: keras.layers.Layer | None = None,
    cell: int = 96,
) -> Path:
    """Draw each image beside the CAMs of its ``top`` highest-scoring classes.

    Each map is upsampled to the image, stretched over its own range and laid over the image in
    jet colours; its title gives the class and score. The true class, when among them, is framed
    in green (gold when it is also the prediction).

    Args:
        model: see :func:`class_activation_maps`.
        images: batch ``(N, H, W, C)`` as ``model`` takes it (raw pixels for an inference model, or
            whitened images together with ``whitening``).
        path: a ``.png`` file, or a folder for the file ``cam.png``; default the folder
            ``nin_keras_visualize``.
        labels: true classes, one per image, or None.
        class_names: one name per class; indices are shown otherwise.
        top: how many classes per image, best first.
        whitening: the ``ZCAWhitening`` layer that whitened ``images``, to show them un-whitened.
        cell: size in pixels of each square cell; the PNG is ``(1 + top) * cell`` wide and
            ``N * cell`` high.

    Returns:
        The path written.
    """
    cams, predictions = class_activation_maps(model, images)
    count, num_classes = predictions.shape
    if not 1 <= top <= num_classes:
        raise ValueError(f"top={top}: must be between 1 and the number of classes ({num_classes})")
    if labels is not None and len(labels) != count:
        raise ValueError(f"labels: expected {count} labels, got {len(labels)}")
    names = list(class_names) if class_names is not None else [str(k) for k in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"class_names: expected {num_classes} names, got {len(names)}")
    shown = rendering.display_images(images, whitening)
    heat = rendering.upsample(cams, shown.shape[1:3])
    ranked = np.argsort(-predictions, axis=-1)[:, :top]
    fig, axes = rendering.new_grid(count, 1 + top, cell)
    font = rendering.font_size(cell)
    for row in range(count):
        rendering.show_image(axes[row, 0], shown[row])
        truth = None if labels is None else int(labels[row])
        if truth is not None:
            axes[row, 0].set_title(f"true {names[truth]}", fontsize=font)
        for col, k in enumerate(ranked[row], start=1):
            ax = axes[row, col]
            m = heat[row, ..., k]
            rendering.overlay(ax, shown[row], m, float(m.min()), float(m.max()))
            ax.set_title(f"{names[k]} {predictions[row, k]:.2f}", fontsize=font)
            if k == truth:
                rendering.mark(ax, "gold" if col == 1 else "lime")
    return rendering.save_png(fig, rendering.output_path(path, "cam.png"))
