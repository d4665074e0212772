"""Argument checks and shape helpers shared by the nin_keras layers: every failure is a ValueError
naming the argument."""

from __future__ import annotations

from collections.abc import Sequence

import keras


def positive_int(value: object, name: str) -> int:
    """Return ``value`` as an int, or raise ValueError naming ``name`` if it is not a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    return int(value)


def int_tuple(value: int | Sequence[int], n: int, name: str) -> tuple[int, ...]:
    """Normalize an int or a length-``n`` sequence of positive ints (a kernel size, a stride) to a tuple."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,) * n
    if not isinstance(value, Sequence) or len(value) != n:
        raise ValueError(f"`{name}` must be an int or a sequence of {n} ints, got {value!r}.")
    return tuple(positive_int(v, name) for v in value)


def rate(value: object, name: str) -> float:
    """Return ``value`` as a float in [0, 1), or raise ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be a number in [0, 1), got {value!r}.")
    return float(value)


def choice(value: object, allowed: Sequence[str], name: str) -> str:
    """Return ``value`` if it is one of ``allowed`` (case-insensitive), lower-cased; else raise ValueError."""
    if not isinstance(value, str) or value.lower() not in allowed:
        raise ValueError(f"`{name}` must be one of {list(allowed)}, got {value!r}.")
    return value.lower()


def data_format(value: str | None) -> str:
    """Resolve ``data_format`` (None means the Keras config default)."""
    if value is None:
        return keras.config.image_data_format()
    return choice(value, ("channels_last", "channels_first"), "data_format")


def check_rank(input_shape: Sequence[int | None], rank: int, layer: str) -> None:
    """Raise ValueError if ``input_shape`` (batch included) does not have ``rank`` dimensions."""
    if len(input_shape) != rank:
        raise ValueError(
            f"{layer} expects inputs of rank {rank} (batch included), got `input_shape`={tuple(input_shape)}."
        )


def check_min_rank(input_shape: Sequence[int | None], rank: int, layer: str) -> None:
    """Raise ValueError if ``input_shape`` (batch included) has fewer than ``rank`` dimensions."""
    if len(input_shape) < rank:
        raise ValueError(
            f"{layer} expects inputs of rank >= {rank} (batch included), got `input_shape`={tuple(input_shape)}."
        )


def channel_axis(fmt: str, rank: int) -> int:
    """The channel axis of a rank-``rank`` tensor in data format ``fmt``."""
    return 1 if fmt == "channels_first" else rank - 1


def add_channel_bias(x, bias, fmt: str):
    """``x + bias`` over the channel axis of a 4-D ``x`` in data format ``fmt``.

    Keras 3.15's TensorFlow ``ops.add(x, reshape(bias, (1, C, 1, 1)))`` turns into
    ``tf.nn.bias_add`` in NHWC whenever the last axis of ``x`` also has size C, so a channels_first
    map whose width equals its channel count got the bias added along its width (stock
    ``keras.layers.Conv2D`` does the same). With the reshaped bias as the first operand the
    shortcut never applies, and broadcasting adds it along the channels.
    """
    if fmt == "channels_last":
        return keras.ops.add(x, bias)
    return keras.ops.add(keras.ops.reshape(bias, (1, -1, 1, 1)), x)


def known_dim(dim: int | None, name: str) -> int:
    """A channel dimension must be known to create weights."""
    if dim is None:
        raise ValueError(f"The channel dimension of `{name}` must be defined, got None.")
    return int(dim)


def window_output_length(length: int | None, window: int, stride: int, padding: str) -> int | None:
    """Output length of a convolution or pooling window along one axis (None stays None).

    ``padding``: ``"valid"`` (whole windows only), ``"same"`` (``ceil(length / stride)``) or
    ``"caffe"``, Caffe's unpadded pooling, which rounds up: ``ceil((length - window) / stride) + 1``,
    the last window running past the bottom/right border.
    """
    if length is None:
        return None
    if padding == "same":
        return -(-length // stride)
    if padding == "caffe":
        return max(0, -(-(length - window) // stride) + 1)
    return max(0, (length - window) // stride + 1)


def spatial_axes(fmt: str) -> tuple[int, int]:
    """The two spatial axes of a 4-D tensor in data format ``fmt``."""
    return (2, 3) if fmt == "channels_first" else (1, 2)


def window_output_shape(
    input_shape: Sequence[int | None],
    window: Sequence[int],
    strides: Sequence[int],
    padding: str,
    fmt: str,
    layer: str,
    channels: int | None = None,
) -> tuple[int | None, ...]:
    """Output shape of a 2-D window op (convolution or pooling) on a 4-D ``input_shape``.

    Each spatial axis gets ``window_output_length`` under ``padding``; the channel axis becomes
    ``channels`` when given (a convolution), else it is kept (a pooling).

    Raises:
        ValueError: ``input_shape`` is not of rank 4 (the message names ``layer``).
    """
    check_rank(input_shape, 4, layer)
    shape = list(input_shape)
    for axis, k, s in zip(spatial_axes(fmt), window, strides):
        shape[axis] = window_output_length(shape[axis], k, s, padding)
    if channels is not None:
        shape[channel_axis(fmt, 4)] = channels
    return tuple(shape)
