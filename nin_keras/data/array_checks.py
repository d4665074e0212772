"""The one rule every data set reader applies to what it returns: exact ``uint8`` pixels and whole
``int64`` labels, else ``DataError`` (its own module so that the readers and ``arrays.py``, which
reads whole splits through them, both import it and not each other)."""

from __future__ import annotations

from typing import Any

import numpy as np

from nin_keras.errors import DataError


def pixel_array(values: Any, source: str) -> np.ndarray:
    """Images as ``uint8``, exactly: the one rule every reader applies to the pixels it returns.

    Integer values in ``0..255`` (of any integer dtype) are kept as they are; anything else is
    refused rather than wrapped or rounded: an ``int32`` 300 would become 44, a float image in
    ``[0, 1]`` all zeros and ones.

    Args:
        values: the images as read (array or nested lists).
        source: the file, for the message.

    Returns:
        The images as a ``uint8`` array of the same shape.

    Raises:
        DataError: not numeric, a float or bool dtype, or values outside ``0..255``.

    Example:
        >>> pixel_array(np.array([[0, 255]], np.int32), "x.npz").dtype
        dtype('uint8')
    """
    array = _numeric(values, source, "images")
    if array.dtype.kind not in "ui":
        raise DataError(f"{source}: images must hold integer pixel values 0..255, got dtype {array.dtype} "
                        f"(scale and round float images to uint8 first)")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise DataError(f"{source}: pixel values must lie in 0..255, got {array.min()}..{array.max()} "
                        f"(refusing to wrap them)")
    return array.astype(np.uint8)


def label_array(values: Any, source: str) -> np.ndarray:
    """Labels as ``int64``, exactly: whole non-negative numbers of any integer or float dtype.

    Raises:
        DataError: not numeric, a bool dtype, or a value that is negative, fractional (0.2 would
            become class 0), not finite or beyond int64.

    Example:
        >>> label_array([3.0, 1.0], "y.npz")
        array([3, 1])
    """
    array = _numeric(values, source, "labels")
    if array.dtype.kind == "f" and not (np.isfinite(array) & (array == np.round(array))).all():
        bad = array[~(np.isfinite(array) & (array == np.round(array)))].flat[0]
        raise DataError(f"{source}: labels must be whole numbers, got {bad} (refusing to round them)")
    if array.size and (array.min() < 0 or array.max() > np.iinfo(np.int64).max):
        raise DataError(f"{source}: labels must lie in 0..{np.iinfo(np.int64).max}, got "
                        f"{array.min()}..{array.max()}")
    return array.astype(np.int64)


def _numeric(values: Any, source: str, what: str) -> np.ndarray:
    try:
        array = np.asarray(values)
    except (ValueError, TypeError) as error:  # ragged nested lists
        raise DataError(f"{source}: {what} are not a numeric array ({error})") from error
    if array.dtype.kind not in "uif":
        raise DataError(f"{source}: {what} must be numbers, got dtype {array.dtype}")
    return array
