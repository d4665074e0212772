"""Learning-rate schedules for the training loop, with state that survives a resume.

A schedule answers ``learning_rate(epoch, step_in_epoch)`` before every step and hears each
finished epoch's metrics through ``on_epoch_end``. Step-based schedules (constant, cosine,
one-cycle) are pure functions of the position; the paper's plateau rule keeps a little state
(current rate, best monitored value, epochs without improvement), returned by ``get_state`` and
written into every checkpoint so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import math
from typing import Any, Mapping


class Schedule:
    """Base class: a constant learning rate.

    Args:
        learning_rate: the rate, > 0.
        steps_per_epoch: optimizer steps in one epoch (used by step-based subclasses).
        epochs: planned number of epochs (used by step-based subclasses).
    """

    def __init__(self, learning_rate: float, steps_per_epoch: int = 1, epochs: int = 1):
        if not learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
        if steps_per_epoch < 1 or epochs < 1:
            raise ValueError(
                f"steps_per_epoch and epochs must be >= 1, got {steps_per_epoch!r}, {epochs!r}"
            )
        self.base_learning_rate = float(learning_rate)
        self.steps_per_epoch = int(steps_per_epoch)
        self.epochs = int(epochs)

    def learning_rate(self, epoch: int, step_in_epoch: int) -> float:
        """The rate for the step about to run (``epoch`` and ``step_in_epoch`` count from 0)."""
        return self.base_learning_rate

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """Hear the metrics of a finished epoch (no-op for step-based schedules)."""

    def should_stop(self) -> bool:
        """True when the schedule has run its course and training should end early."""
        return False

    def get_state(self) -> dict[str, Any]:
        """JSON-serializable state to checkpoint."""
        return {}

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restore what ``get_state`` returned."""

    def _progress(self, epoch: int, step_in_epoch: int) -> float:
        """Fraction of the planned steps already done, in ``[0, 1]``."""
        total = self.steps_per_epoch * self.epochs
        return min(1.0, (epoch * self.steps_per_epoch + step_in_epoch) / total)


class CosineSchedule(Schedule):
    """Linear warm-up, then cosine decay to ``final_fraction * learning_rate``.

    Args:
        learning_rate: peak rate.
        warmup_epochs: epochs (fractional allowed) of linear warm-up from ~0 to the peak.
        final_fraction: rate at the end as a fraction of the peak.
    """

    def __init__(
        self,
        learning_rate: float,
        steps_per_epoch: int = 1,
        epochs: int = 1,
        warmup_epochs: float = 0.0,
        final_fraction: float = 0.0,
    ):
        super().__init__(learning_rate, steps_per_epoch, epochs)
        if not 0 <= warmup_epochs < epochs:
            raise ValueError(f"warmup_epochs must be in [0, epochs), got {warmup_epochs!r}")
        self.warmup_fraction = warmup_epochs / epochs
        self.final_fraction = float(final_fraction)

    def learning_rate(self, epoch: int, step_in_epoch: int) -> float:
        # Progress at the end of this step, so warm-up never uses a zero rate.
        t = min(1.0, self._progress(epoch, step_in_epoch) + 1.0 / (self.steps_per_epoch * self.epochs))
        peak = self.base_learning_rate
        if t <= self.warmup_fraction:
            return peak * t / self.warmup_fraction
        u = (t - self.warmup_fraction) / (1.0 - self.warmup_fraction)
        low = peak * self.final_fraction
        return low + 0.5 * (peak - low) * (1.0 + math.cos(math.pi * u))


class OneCycleSchedule(Schedule):
    """Smith's one-cycle policy: linear ramp up, then linear ramp down far below the start.

    The rate rises from ``learning_rate / div_factor`` to ``learning_rate`` over the first
    ``pct_start`` of training, then falls linearly to ``learning_rate / final_div_factor``.

    Args:
        learning_rate: peak rate.
        pct_start: fraction of training spent ramping up.
        div_factor: start rate = peak / div_factor.
        final_div_factor: end rate = peak / final_div_factor.
    """

    def __init__(
        self,
        learning_rate: float,
        steps_per_epoch: int = 1,
        epochs: int = 1,
        pct_start: float = 0.25,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
    ):
        super().__init__(learning_rate, steps_per_epoch, epochs)
        if not 0 < pct_start < 1:
            raise ValueError(f"pct_start must be in (0, 1), got {pct_start!r}")
        self.pct_start = float(pct_start)
        self.start = self.base_learning_rate / div_factor
        self.end = self.base_learning_rate / final_div_factor

    def learning_rate(self, epoch: int, step_in_epoch: int) -> float:
        t = self._progress(epoch, step_in_epoch)
        peak = self.base_learning_rate
        if t < self.pct_start:
            return self.start + (peak - self.start) * t / self.pct_start
        return peak + (self.end - peak) * (t - self.pct_start) / (1.0 - self.pct_start)


class PlateauSchedule(Schedule):
    """The paper's rule: divide the rate by 10 when training accuracy stops improving.

    After each epoch the monitored value (training accuracy by default) is compared with the
    best so far. An improvement of more than ``min_delta`` resets the patience counter; otherwise
    the counter grows, and when it reaches ``patience`` the rate is multiplied by ``factor``
    (never below ``min_learning_rate``) and the counter restarts. Once the rate sits at the
    floor and another plateau is detected, ``should_stop()`` turns true: the run has gone
    "down to 1/100 of the start" and stopped improving.

    Args:
        learning_rate: starting rate.
        factor: multiplier applied at each plateau (0.1 in the paper).
        patience: epochs without improvement that make a plateau.
        min_delta: smallest increase of the monitored value that counts as improvement.
        min_fraction: floor of the rate as a fraction of the start (0.01 in the paper).
        monitor: metric name to watch; higher is better.
        stop_at_floor: end training at a plateau at the floor rate.

    Example:
        >>> s = PlateauSchedule(0.1, patience=1)
        >>> s.on_epoch_end(0, {"accuracy": 0.5}); s.on_epoch_end(1, {"accuracy": 0.5})
        >>> s.learning_rate(2, 0)
        0.010000000000000002
    """

    def __init__(
        self,
        learning_rate: float,
        steps_per_epoch: int = 1,
        epochs: int = 1,
        factor: float = 0.1,
        patience: int = 3,
        min_delta: float = 1e-3,
        min_fraction: float = 0.01,
        monitor: str = "accuracy",
        stop_at_floor: bool = True,
    ):
        super().__init__(learning_rate, steps_per_epoch, epochs)
        if not 0 < factor < 1:
            raise ValueError(f"factor must be in (0, 1), got {factor!r}")
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience!r}")
        self.factor = float(factor)
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.min_learning_rate = self.base_learning_rate * float(min_fraction)
        self.monitor = monitor
        self.stop_at_floor = bool(stop_at_floor)
        self.current = self.base_learning_rate
        self.best: float | None = None
        self.wait = 0
        self.exhausted = False

    def learning_rate(self, epoch: int, step_in_epoch: int) -> float:
        return self.current

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        if self.monitor not in metrics:
            raise ValueError(
                f"PlateauSchedule monitors {self.monitor!r} but the epoch metrics are {sorted(metrics)}"
            )
        value = float(metrics[self.monitor])
        if self.best is None or value > self.best + self.min_delta:
            self.best = value
            self.wait = 0
            return
        self.wait += 1
        if self.wait < self.patience:
            return
        self.wait = 0
        # Compare with a relative tolerance: repeated multiplication by 0.1 is inexact.
        if self.current <= self.min_learning_rate * (1 + 1e-9):
            self.exhausted = self.stop_at_floor
        else:
            self.current = max(self.current * self.factor, self.min_learning_rate)

    def should_stop(self) -> bool:
        return self.exhausted

    def get_state(self) -> dict[str, Any]:
        return {"current": self.current, "best": self.best, "wait": self.wait, "exhausted": self.exhausted}

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.current = float(state["current"])
        self.best = None if state["best"] is None else float(state["best"])
        self.wait = int(state["wait"])
        self.exhausted = bool(state["exhausted"])


SCHEDULES = {
    "constant": Schedule,
    "cosine": CosineSchedule,
    "one_cycle": OneCycleSchedule,
    "plateau": PlateauSchedule,
}


def make_schedule(
    config: Mapping[str, Any], learning_rate: float, steps_per_epoch: int, epochs: int
) -> Schedule:
    """Build a schedule from a recipe's ``schedule`` block.

    Args:
        config: ``{"name": one of constant|cosine|one_cycle|plateau, **options}``.
        learning_rate: the optimizer's (peak or starting) rate.
        steps_per_epoch: optimizer steps per epoch.
        epochs: planned epochs.

    Example:
        >>> make_schedule({"name": "cosine", "warmup_epochs": 1}, 0.1, 100, 10)
    """
    options = dict(config)
    name = options.pop("name", "constant")
    if name not in SCHEDULES:
        raise ValueError(f"schedule name {name!r} is not one of {sorted(SCHEDULES)}")
    try:
        return SCHEDULES[name](learning_rate, steps_per_epoch, epochs, **options)
    except TypeError as e:
        raise ValueError(f"bad options for schedule {name!r}: {e}") from None
