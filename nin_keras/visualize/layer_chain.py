"""A model seen as a chain of leaf layers, run one layer at a time.

Every zoo architecture is a straight line of layers (preprocessing, then the network), possibly
nested (an inference model holding the network as one sub-model). The visualizations need the
output of any layer in that line and the input of any other, so they flatten the model once into
its leaf layers and call them in order.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np

from nin_keras.models.introspection import leaf_layers


def flatten_chain(model: keras.Model) -> list[keras.layers.Layer]:
    """The leaf layers of ``model`` in the order data flows through them.

    Nested models (``Sequential`` or functional) are opened recursively; input layers are
    dropped. Operations applied in a functional model (e.g. the input cast of an inference model)
    are kept, as entries that are ``keras.Operation`` but not ``Layer``.

    Args:
        model: a built Keras model with one input and one output whose layers form a chain.

    Returns:
        The list of leaf layers, first to last.

    Raises:
        ValueError: ``model`` branches or merges (a layer is not fed by the previous one).

    Example:
        >>> [layer.name for layer in flatten_chain(model)]
        ['gcn', 'zca', 'mlpconv1', 'pool1', ...]
    """
    return list(leaf_layers(model, _ordered_layers))


def _ordered_layers(model: keras.Model) -> list[keras.layers.Layer]:
    if isinstance(model, keras.Sequential):
        return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    # Operations, not just layers: a functional model may apply ops such as an input cast.
    layers = [op for op in model.operations if not isinstance(op, keras.layers.InputLayer)]
    # A functional model is a chain when each layer is fed by exactly the layer before it.
    previous = None
    for layer in layers:
        parents = [[p.operation for p in node.parent_nodes] for node in layer._inbound_nodes]
        fed_by_previous = any(
            len(ops) == 1 and (ops[0] is previous or (previous is None and isinstance(ops[0], keras.layers.InputLayer)))
            for ops in parents
        )
        if not fed_by_previous:
            raise ValueError(
                f"model {model.name!r} is not a chain of layers: layer {layer.name!r} is not fed "
                f"by {'the input' if previous is None else repr(previous.name)} alone; the "
                "visualizations need a model whose layers follow one another"
            )
        previous = layer
    return layers


def find_layer(chain: Sequence[keras.layers.Layer], name: str) -> int:
    """Index of the layer called ``name`` in ``chain``.

    Raises:
        ValueError: no layer has that name (the message lists the names there are).
    """
    for index, layer in enumerate(chain):
        if layer.name == name:
            return index
    raise ValueError(f"layer={name!r}: no such layer; the model has {[layer.name for layer in chain]}")


def run_chain(
    chain: Sequence[keras.layers.Layer], inputs: np.ndarray, stop: int | None = None
) -> list[np.ndarray]:
    """Call the layers of ``chain`` in order on ``inputs`` in inference mode.

    Args:
        chain: leaf layers from :func:`flatten_chain`.
        inputs: a batch, shape ``(N, H, W, C)``.
        stop: index of the last layer to run (inclusive); ``None`` runs them all.

    Returns:
        ``[inputs, output of layer 0, output of layer 1, ...]`` as NumPy arrays, so entry ``i`` is
        the input of layer ``i`` and entry ``i + 1`` its output.
    """
    last = len(chain) - 1 if stop is None else stop
    x = keras.ops.convert_to_tensor(np.asarray(inputs, dtype="float32"))
    outputs = [keras.ops.convert_to_numpy(x)]
    for layer in chain[: last + 1]:
        x = layer(x, training=False) if isinstance(layer, keras.layers.Layer) else layer(x)
        outputs.append(keras.ops.convert_to_numpy(x))
    return outputs
