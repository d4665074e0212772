"""An exponential moving average (EMA) of a model's weights, kept beside the training loop.

Averaging the weights of the last few hundred steps (Polyak averaging; timm's ``ModelEma``,
airbench's weight EMA) gives a model that generalizes better than the last step's weights,
especially at the end of a one-cycle schedule. The average covers every floating-point model
variable, the batch-norm moving statistics included, so the averaged network is consistent
with itself; the dropout seed-generator states (integers) are not averaged.

After update ``t`` (counting from 1) with ``decay`` ``d`` and ``warmup`` on::

    d_t = min(d, (1 + t) / (10 + t))
    shadow = d_t * shadow + (1 - d_t) * weights

so early in training, when the initial weights are meaningless, the average follows the
weights closely (``d_1 = 2/11``). The shadow starts as a copy of the initial weights.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import keras
import numpy as np


class WeightAverage:
    """EMA shadow copies of a model's floating-point variables.

    Args:
        model: the model being trained (built).
        decay: the averaging decay ``d`` in ``(0, 1)``; 0.999 averages roughly the last 1,000 steps.
        warmup: use ``min(decay, (1 + t) / (10 + t))`` as the decay of update ``t``.

    Written in ``keras.ops``, so it runs on every backend. On TensorFlow, create it inside the
    training strategy's scope and call ``update()`` inside the compiled train step, in
    cross-replica context (after ``strategy.run``), so every replica's shadow receives the same
    write; on JAX, ``nin_keras.train.fit_loop`` calls it from a callback after each ``fit`` step.

    Example:
        >>> average = WeightAverage(model, decay=0.999)
        >>> ...  # after each optimizer step: average.update()
        >>> with average.applied():
        ...     model.evaluate(x, y)   # the averaged weights
    """

    def __init__(self, model: keras.Model, decay: float, warmup: bool = True):
        if not 0.0 < float(decay) < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay!r}")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.tracked = [v for v in model.variables if keras.backend.standardize_dtype(v.dtype).startswith("float")]
        self.shadow = [
            keras.Variable(keras.ops.convert_to_numpy(v.value), trainable=False, name=f"ema_{v.name}")
            for v in self.tracked
        ]
        self.updates = keras.Variable(0, dtype="int64", trainable=False, name="ema_updates")

    @property
    def variables(self) -> list[keras.Variable]:
        """Every variable of the average (the update counter first), for checkpoints."""
        return [self.updates, *self.shadow]

    def current_decay(self, updates):
        """The decay of update number ``updates`` (counting from 1)."""
        decay = keras.ops.convert_to_tensor(self.decay, "float32")
        if self.warmup:
            t = keras.ops.cast(updates, "float32")
            decay = keras.ops.minimum(decay, (1.0 + t) / (10.0 + t))
        return decay

    def update(self) -> None:
        """Fold the model's current weights into the average (one EMA step)."""
        self.updates.assign_add(1)
        decay = self.current_decay(self.updates.value)
        for shadow, variable in zip(self.shadow, self.tracked):
            shadow.assign(decay * shadow.value + (1.0 - decay) * keras.ops.cast(variable.value, shadow.dtype))

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Swap the averaged weights into the model for the ``with`` block, then swap back."""
        saved = [np.asarray(keras.ops.convert_to_numpy(v.value)) for v in self.tracked]
        self.copy_to_model()
        try:
            yield
        finally:
            for variable, value in zip(self.tracked, saved):
                variable.assign(value)

    def averaged_weights(self, model: keras.Model) -> list[np.ndarray]:
        """``model.get_weights()`` with the averaged values (the weights a run publishes)."""
        with self.applied():
            return [np.array(w) for w in model.get_weights()]

    def copy_to_model(self) -> None:
        """Overwrite the model's weights with the average (for the published weights)."""
        for variable, shadow in zip(self.tracked, self.shadow):
            variable.assign(keras.ops.convert_to_numpy(shadow.value))
