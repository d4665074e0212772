"""Looking inside built models: the per-class confidence maps and the cost per image."""

from __future__ import annotations

import math
from typing import Callable, Iterable, Iterator

import keras

from nin_keras.layers import DropConnect, GlobalAveragePoolingHead, Maxout, MaxoutConv2D, MaxoutMLPConv, MLPConv


# Layers whose cost is their kernels applied at every output position.
_KERNEL_LAYERS = (
    keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D, keras.layers.DepthwiseConv2D,
    keras.layers.Dense, MLPConv, MaxoutMLPConv, Maxout, MaxoutConv2D, DropConnect,
)


def confidence_map_model(model: keras.Model, head: str = "head") -> keras.Model:
    """A model sharing ``model``'s layers and weights that outputs ``[confidence_maps, predictions]``.

    The confidence maps are the input of the ``GlobalAveragePoolingHead`` named ``head``: one
    map per class (the paper's Section 4.7 visualization; CAM starts from them too). Nothing is
    rebuilt or copied, so later weight updates of ``model`` show in the new model.

    Args:
        model: a built functional model with a ``GlobalAveragePoolingHead`` among its own layers
            (for an inference model that wraps a network, pass the network).
        head: name of that layer.

    Returns:
        ``keras.Model(model.inputs, [maps (batch, rows, cols, classes), model.outputs[0]])``.
    """
    try:
        layer = model.get_layer(head)
    except ValueError as err:
        raise ValueError(f"`model` {model.name!r} has no layer named `head`={head!r}.") from err
    if not isinstance(layer, GlobalAveragePoolingHead):
        raise ValueError(f"`head` layer {head!r} is a {type(layer).__name__}, not a GlobalAveragePoolingHead.")
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, [layer.input, model.outputs[0]], name=f"{model.name}_confidence_maps")


def count_flops(model: keras.Model) -> int:
    """Multiply-adds per image of the convolutional and dense layers of a built model.

    Each kernel of shape ``(..., in, out)`` costs ``prod(kernel.shape)`` multiply-adds at every
    output position of its layer (MLPConv's and MaxoutMLPConv's 1×1 convolutions run at the first
    convolution's output positions; a maxout convolution computes every piece). Nested models are
    walked; biases, activations, pooling and normalization are not counted. NIN CIFAR-10 costs 222.5 M.
    """
    return sum(_layer_flops(layer) for layer in leaf_layers(model))


def leaf_layers(
    model: keras.Model,
    children: Callable[[keras.Model], Iterable[keras.Operation]] = lambda model: model.layers,
) -> Iterator[keras.Operation]:
    """The layers of ``model`` with every nested model opened, recursively, in ``children`` order.

    Args:
        model: a Keras model, possibly holding models among its layers.
        children: what one model is made of; ``model.layers`` by default (the visualizations pass
            their data-flow order, which also checks the model is a chain).

    Returns:
        An iterator over the leaf layers (and operations, if ``children`` yields them).

    Example:
        >>> [layer.name for layer in leaf_layers(ImageClassifier.from_preset("nin_cifar10"))]
        ['gcn', 'zca', 'mlpconv1', 'pool1', ...]
    """
    for layer in children(model):
        if isinstance(layer, keras.Model):
            yield from leaf_layers(layer, children)
        else:
            yield layer


def _layer_flops(layer: keras.layers.Layer) -> int:
    if not isinstance(layer, _KERNEL_LAYERS):
        return 0
    shape = layer.output.shape
    fmt = getattr(layer, "data_format", "channels_last")
    positions = shape[2:] if fmt == "channels_first" and len(shape) > 2 else shape[1:-1]
    per_position = sum(math.prod(w.shape) for w in layer.weights if w.path.split("/")[-1].startswith("kernel"))
    return int(per_position * math.prod(positions))
