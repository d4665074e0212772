"""Load the weights of a Caffe Network-in-Network model into a Keras NIN architecture.

Caffe's NIN names its convolutions ``conv<k>`` (the k×k convolution opening each mlpconv) and
``cccp<j>`` (the 1×1 "cascaded cross channel parametric pooling" convolutions after it). They map
onto the Keras layers of ``nin_keras.models`` as:

| Caffe layer | Keras layer | convolution |
|---|---|---|
| ``conv1``, ``cccp1``, ``cccp2`` | ``mlpconv1`` | 0, 1, 2 |
| ``conv2``, ``cccp3``, ``cccp4`` | ``mlpconv2`` | 0, 1, 2 |
| ``conv3``, ``cccp5``, ``cccp6`` | ``mlpconv3`` | 0, 1, 2 |

Each Caffe convolution holds two blobs: weights ``(out, in, kh, kw)``, transposed here to Keras's
``(kh, kw, in, out)``, and a bias of ``out`` values (stored as ``(out,)`` or, in old files, as
``(1, 1, 1, out)``). Its stride, padding and group must match the Keras convolution (Keras
``"same"`` padding is Caffe's ``pad = (k - 1) / 2`` for odd ``k``; cccp layers have none), and so
must the ReLU after it (a Caffe ``ReLU`` layer reading the convolution's output).

Caffe's ``Pooling`` layers, in network order, correspond to the model's ``CaffePooling2D`` layers in
order (``pool1``, ``pool2``), which reproduce Caffe's pooling (output size rounded up, averages over
the part of the window inside the image); a final average pooling over the whole map is the
``GlobalAveragePoolingHead``. Pooling type, window and stride are checked too.

Everything is checked before anything is assigned, so a mismatch leaves the model untouched and
the :class:`~nin_keras.errors.WeightsMismatchError` names the Caffe layer, the blob or parameter,
and both values.

Example:
    >>> from nin_keras.models import nin_cifar10
    >>> model = load_caffe_weights(nin_cifar10(), "cifar10_nin.caffemodel")
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import keras
import numpy as np

from nin_keras.caffe.reader import CaffeLayer, CaffeModel, read_caffemodel
from nin_keras.errors import WeightsMismatchError
from nin_keras.layers import CaffePooling2D, GlobalAveragePoolingHead, MLPConv

#: Caffe layer name -> (Keras MLPConv layer name, index of the convolution inside it).
NIN_LAYER_MAPPING: dict[str, tuple[str, int]] = {
    "conv1": ("mlpconv1", 0),
    "cccp1": ("mlpconv1", 1),
    "cccp2": ("mlpconv1", 2),
    "conv2": ("mlpconv2", 0),
    "cccp3": ("mlpconv2", 1),
    "cccp4": ("mlpconv2", 2),
    "conv3": ("mlpconv3", 0),
    "cccp5": ("mlpconv3", 1),
    "cccp6": ("mlpconv3", 2),
}


def _target_layer(model: keras.Model, name: str, caffe_name: str) -> MLPConv:
    try:
        layer = model.get_layer(name)
    except ValueError:
        raise WeightsMismatchError(
            f"Caffe layer {caffe_name!r} maps to Keras layer {name!r}, which model {model.name!r} does not have"
        ) from None
    if not isinstance(layer, MLPConv):
        raise WeightsMismatchError(f"Keras layer {name!r} is a {type(layer).__name__}, not an MLPConv")
    if layer.batch_norm:
        raise WeightsMismatchError(
            f"Keras layer {name!r} uses batch normalization; Caffe NIN convolutions have plain biases"
        )
    return layer


def _pair(caffe_layer: CaffeLayer, name: str, default: int | None) -> tuple[int | None, int | None]:
    """A (rows, cols) Caffe parameter from ``<name>_h``/``<name>_w`` or ``<name>``/``kernel_size``."""
    params = caffe_layer.params
    prefix = "kernel" if name == "kernel_size" else name
    if f"{prefix}_h" in params or f"{prefix}_w" in params:
        return (params.get(f"{prefix}_h", (default,))[-1], params.get(f"{prefix}_w", (default,))[-1])
    values = params.get(name, (default,))
    return values[0], values[-1]


def _check_convolution(caffe_layer: CaffeLayer, caffe_relu: bool, layer: MLPConv, index: int, where: str) -> None:
    kernel = layer.kernel_size if index == 0 else (1, 1)
    strides = layer.strides if index == 0 else (1, 1)
    if index == 0 and layer.padding == "same":
        if any(k % 2 == 0 for k in kernel) or strides != (1, 1):
            raise WeightsMismatchError(
                f"{where}: Keras 'same' padding with kernel {kernel} and strides {strides} has no Caffe equivalent"
            )
        pad = tuple((k - 1) // 2 for k in kernel)
    else:
        pad = (0, 0)
    for name, want, default in (("stride", strides, 1), ("pad", pad, 0)):
        got = _pair(caffe_layer, name, default)
        if got != tuple(want):
            raise WeightsMismatchError(f"{where}: Caffe {name} {got}, the Keras convolution needs {tuple(want)}")
    last = index == len(layer.kernels) - 1
    keras_relu = layer.activation is keras.activations.relu and not (layer.linear_last and last)
    if caffe_relu != keras_relu:
        raise WeightsMismatchError(
            f"{where}: Caffe {'applies a' if caffe_relu else 'has no'} ReLU after it, "
            f"the Keras convolution {'does not' if caffe_relu else 'does'}"
        )
    group = caffe_layer.params.get("group", (1,))[-1]
    if group != 1:
        raise WeightsMismatchError(f"{where}: Caffe group {group}; Keras MLPConv convolutions are ungrouped")


_POOL_MODES = {0: "max", 1: "average"}


def _check_pooling(model: keras.Model, caffe_model: CaffeModel) -> None:
    """Caffe Pooling layers, in order, against the CaffePooling2D layers and the GAP head."""
    caffe_pools = [layer for layer in caffe_model.layers if layer.type == "Pooling"]
    keras_pools = [layer for layer in model.layers if isinstance(layer, CaffePooling2D)]
    heads = [layer for layer in model.layers if isinstance(layer, GlobalAveragePoolingHead)]
    if len(caffe_pools) != len(keras_pools) + len(heads):
        raise WeightsMismatchError(
            f"the Caffe model has {len(caffe_pools)} Pooling layers {[l.name for l in caffe_pools]}, model "
            f"{model.name!r} has {len(keras_pools)} CaffePooling2D layers and {len(heads)} global-average heads"
        )
    for caffe_layer, layer in zip(caffe_pools, keras_pools + heads):
        where = f"Caffe layer {caffe_layer.name!r} -> {layer.name}"
        mode = _POOL_MODES.get(caffe_layer.params.get("pool", (0,))[-1], "stochastic")
        if isinstance(layer, GlobalAveragePoolingHead):
            if mode != "average":
                raise WeightsMismatchError(f"{where}: Caffe {mode} pooling, the head averages")
            maps = tuple(layer.input.shape[1:3])
            window = _pair(caffe_layer, "kernel_size", None)
            if not caffe_layer.params.get("global_pooling", (0,))[-1] and None not in maps and window != maps:
                raise WeightsMismatchError(f"{where}: Caffe window {window} does not cover the {maps} maps")
            continue
        expected = {"pool": mode, "kernel_size": _pair(caffe_layer, "kernel_size", None),
                    "stride": _pair(caffe_layer, "stride", 1), "pad": _pair(caffe_layer, "pad", 0)}
        keras_side = {"pool": layer.mode, "kernel_size": layer.pool_size, "stride": layer.strides, "pad": (0, 0)}
        for name, got in expected.items():
            if got != keras_side[name]:
                raise WeightsMismatchError(f"{where}: Caffe {name} {got}, the Keras layer has {keras_side[name]}")


def caffe_to_keras_weights(
    model: keras.Model,
    caffe_model: CaffeModel,
    mapping: Mapping[str, tuple[str, int]] = NIN_LAYER_MAPPING,
) -> list[tuple[keras.Variable, np.ndarray]]:
    """Pair each Keras variable with its converted Caffe array, checking everything first.

    Args:
        model: a built NIN (e.g. ``nin_keras.models.nin_cifar10()``).
        caffe_model: the parsed ``.caffemodel``.
        mapping: Caffe layer name -> (Keras MLPConv name, convolution index).

    Returns:
        ``(variable, value)`` pairs covering every convolution of the mapped Keras layers.

    Raises:
        WeightsMismatchError: a mapped layer is missing on either side, a Caffe layer with blobs
            is not in the mapping, a Keras convolution gets no weights, a blob's shape differs
            from the Keras variable's (the message names the layer, the blob and both shapes), or
            a convolution's stride/pad/group/ReLU or a pooling layer's type/window/stride differs.
    """
    pairs: list[tuple[keras.Variable, np.ndarray]] = []
    filled: set[tuple[str, int]] = set()
    targets: dict[str, MLPConv] = {}
    for caffe_layer in caffe_model.layers:
        if not caffe_layer.blobs:
            continue
        if caffe_layer.name not in mapping:
            raise WeightsMismatchError(
                f"Caffe layer {caffe_layer.name!r} ({caffe_layer.type}) has weights but no Keras "
                f"counterpart in the mapping (mapped layers: {sorted(mapping)})"
            )
        keras_name, index = mapping[caffe_layer.name]
        layer = targets.setdefault(keras_name, _target_layer(model, keras_name, caffe_layer.name))
        where = f"Caffe layer {caffe_layer.name!r} -> {keras_name} convolution {index}"
        if not 0 <= index < len(layer.kernels):
            raise WeightsMismatchError(f"{where}: {keras_name} has only {len(layer.kernels)} convolutions")
        if len(caffe_layer.blobs) != 2:
            raise WeightsMismatchError(f"{where}: expected 2 blobs (weights, bias), found {len(caffe_layer.blobs)}")
        weights, bias = caffe_layer.blobs
        kernel_var, bias_var = layer.kernels[index], layer.biases[index]
        # Keras (kh, kw, in, out) is Caffe (out, in, kh, kw) with axes (2, 3, 1, 0).
        expected = tuple(kernel_var.shape[i] for i in (3, 2, 0, 1))
        if weights.shape != expected:
            raise WeightsMismatchError(
                f"{where}: blob 0 (weights) has shape {weights.shape}, the Keras kernel "
                f"{tuple(kernel_var.shape)} needs Caffe shape {expected}"
            )
        # Old files store the bias as (1, 1, 1, out); accept any shape holding exactly `out` values
        # along one axis.
        if sum(d != 1 for d in bias.shape) > 1 or bias.size != bias_var.shape[0]:
            raise WeightsMismatchError(
                f"{where}: blob 1 (bias) has shape {bias.shape}, the Keras bias needs {tuple(bias_var.shape)}"
            )
        caffe_relu = any(l.type == "ReLU" and l.bottom == caffe_layer.top for l in caffe_model.layers)
        _check_convolution(caffe_layer, caffe_relu, layer, index, where)
        pairs.append((kernel_var, weights.transpose(2, 3, 1, 0)))
        pairs.append((bias_var, bias.reshape(-1)))
        filled.add((keras_name, index))
    missing = sorted(set(mapping.values()) - filled)
    if missing:
        absent = [c for c, target in mapping.items() if target in missing]
        raise WeightsMismatchError(f"Caffe layers {absent} are missing or have no weights in the .caffemodel")
    for keras_name, layer in targets.items():
        unfilled = [i for i in range(len(layer.kernels)) if (keras_name, i) not in filled]
        if unfilled:
            raise WeightsMismatchError(f"Keras layer {keras_name!r} convolutions {unfilled} get no Caffe weights")
    _check_pooling(model, caffe_model)
    return pairs


def load_caffe_weights(
    model: keras.Model,
    source: CaffeModel | str | os.PathLike,
    mapping: Mapping[str, tuple[str, int]] = NIN_LAYER_MAPPING,
) -> keras.Model:
    """Assign a Caffe NIN's weights to ``model`` (all or nothing) and return it.

    Args:
        model: a built Keras NIN with ``MLPConv`` layers named as in ``mapping``.
        source: a ``.caffemodel`` path or a parsed :class:`CaffeModel`.
        mapping: Caffe layer name -> (Keras MLPConv name, convolution index); the default is
            :data:`NIN_LAYER_MAPPING`.

    Returns:
        ``model``, with the Caffe weights.

    Raises:
        CaffeFormatError: ``source`` is not a readable ``.caffemodel``.
        WeightsMismatchError: the Caffe layers don't fit ``model`` (nothing is assigned then).
    """
    caffe_model = source if isinstance(source, CaffeModel) else read_caffemodel(source)
    for variable, value in caffe_to_keras_weights(model, caffe_model, mapping):
        variable.assign(value)
    return model
