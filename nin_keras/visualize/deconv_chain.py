"""The layers the deconvnet walks: which it can reverse, their window geometry, where the network
starts after the preprocessing, and where a feature map is strongest.

Shared by the reverse pass (``reverse_pass.py``), the receptive fields (``receptive_fields.py``),
the top-activation search (``activation_search.py``) and the plots (``deconv_plots.py``); the
supported layers are listed in ``nin_keras.visualize.deconvnet``.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import keras
import numpy as np

from nin_keras.layers import PREPROCESSING_LAYERS, CaffePooling2D, MLPConv, RandomPadCrop

# Augmentation layers of a training stack are skipped like the classifier's preprocessing.
_PREPROCESSING = (*PREPROCESSING_LAYERS, RandomPadCrop)
# Identity at inference: the signal passes back unchanged.
_IDENTITY = (
    keras.layers.Dropout, keras.layers.SpatialDropout2D, keras.layers.GaussianNoise,
    keras.layers.GaussianDropout, keras.layers.AlphaDropout, keras.layers.ActivityRegularization,
)


@dataclasses.dataclass(frozen=True)
class Window:
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


def layer_window(layer: keras.layers.Layer) -> Window | None:
    """The layer's window geometry; None for layers that keep every position where it is."""
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise ValueError(f"layer {layer.name!r}: the deconvnet supports channels_last layers only")
    if isinstance(layer, MLPConv):
        return Window(tuple(layer.kernel_size), tuple(layer.strides), layer.padding)
    if isinstance(layer, keras.layers.Conv2D):
        if tuple(layer.dilation_rate) != (1, 1) or layer.groups != 1:
            raise ValueError(f"layer {layer.name!r}: dilated or grouped convolutions are not supported")
        return Window(tuple(layer.kernel_size), tuple(layer.strides), layer.padding)
    if isinstance(layer, CaffePooling2D):
        # Caffe pools without padding; windows past the bottom/right border are clipped.
        return Window(tuple(layer.pool_size), tuple(layer.strides), "valid")
    if isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)):
        return Window(tuple(layer.pool_size), tuple(layer.strides), layer.padding)
    if isinstance(layer, (*_IDENTITY, keras.layers.ReLU, keras.layers.BatchNormalization)):
        return None
    if isinstance(layer, keras.layers.Activation):
        rectifies(layer.activation, layer.name)
        return None
    raise ValueError(
        f"layer {layer.name!r} ({type(layer).__name__}) cannot be run backwards by the deconvnet; "
        "supported: MLPConv, CaffePooling2D, Conv2D, MaxPooling2D, AveragePooling2D, "
        "BatchNormalization, ReLU/Activation, dropout"
    )


def rectifies(activation, where: str) -> bool:
    """True for ReLU, False for the identity; other activations have no deconvnet rule."""
    name = getattr(activation, "__name__", str(activation))
    if name not in ("relu", "linear"):
        raise ValueError(f"layer {where!r}: activation {name!r} is not supported (ReLU or linear only)")
    return name == "relu"


def _is_preprocessing(layer: keras.layers.Layer) -> bool:
    # An inference model casts its uint8 input with a bare ``Cast`` operation before preprocessing.
    return isinstance(layer, _PREPROCESSING) or type(layer).__name__ == "Cast"


def network_start(chain: Sequence[keras.layers.Layer], target: int) -> int:
    """Index of the first network layer: the one after the last preprocessing layer before ``target``."""
    preprocessing = [i for i in range(target) if _is_preprocessing(chain[i])]
    start = preprocessing[-1] + 1 if preprocessing else 0
    if start > target:
        raise ValueError(f"layer {chain[target].name!r} is a preprocessing layer, not part of the network")
    for layer in chain[start : target + 1]:
        layer_window(layer)  # raises for layers the deconvnet cannot reverse
    return start


def is_max_pooling(layer: keras.layers.Layer) -> bool:
    return isinstance(layer, keras.layers.MaxPooling2D) or (isinstance(layer, CaffePooling2D) and layer.mode == "max")


def strongest_positions(maps: np.ndarray) -> np.ndarray:
    """``(N, 2)`` (row, col) of each map's maximum."""
    flat = maps.reshape(maps.shape[0], -1).argmax(axis=-1)
    return np.stack(np.unravel_index(flat, maps.shape[1:3]), axis=-1)
