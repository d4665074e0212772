"""Whole-number arguments: one rule for every function that takes a count.

A count out of range is refused with a ``ValueError`` naming the argument, and ``0`` never
silently means "the default" (issue 27's rule); ``bool`` is not a number here, though Python
calls it an ``int``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nin_keras.errors import Argument, ArgumentError


def is_whole(value: Any) -> bool:
    """An ``int`` or NumPy integer, not a ``bool``."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_count(value: Any, name: str, minimum: int = 1, optional: bool = False) -> None:
    """Refuse ``value`` unless it is a whole number ``>= minimum`` (or ``None`` when ``optional``).

    Raises:
        ArgumentError: (a ``ValueError``) naming ``name``, the rule and the value.
    """
    if optional and value is None:
        return
    if not is_whole(value) or value < minimum:
        allowed = f"{'None or ' if optional else ''}an integer >= {minimum}"
        raise ArgumentError(Argument(name), f" must be {allowed}, got {value!r}")
