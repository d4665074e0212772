"""Numeric arguments: one rule for every function that takes a count, and one for a bounded real.

A count or number out of range is refused with a ``ValueError`` naming the argument, and ``0`` never
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


def check_number(value: Any, name: str, minimum: float | None = None, maximum: float | None = None) -> float:
    """``value`` as a float, unless it is not a finite real number in ``[minimum, maximum]``.

    Raises:
        ArgumentError: (a ``ValueError``) naming ``name``, the range and the value.
    """
    real = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if (not real or not np.isfinite(value) or (minimum is not None and value < minimum)
            or (maximum is not None and value > maximum)):
        bounds = (f"in [{minimum}, {maximum}]" if minimum is not None and maximum is not None
                  else f">= {minimum}" if minimum is not None else f"<= {maximum}" if maximum is not None else "finite")
        raise ArgumentError(Argument(name), f" must be a number {bounds}, got {value!r}")
    return float(value)
