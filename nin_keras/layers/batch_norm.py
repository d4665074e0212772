"""Batch normalization whose training step is one fused kernel on TensorFlow.

Keras 3's ``BatchNormalization`` computes a training batch's moments and the normalization as
separate element-wise ops (Keras 2 called TensorFlow's fused kernel, ``fused=True``). On a CPU
those ops are bound by memory traffic: NIN CIFAR-10 with a batch norm after each of its nine
convolutions trained at 110 images/s with Keras's layer and 146 with this one in float32 (154
without batch norm), 149 and 255 under ``mixed_bfloat16`` (batch 128, 2-core AMD EPYC Zen 4:
``python benchmarks/train_step.py --variants baseline batch_norm batch_norm_bf16 --result
train_step_batch_norm``). TensorFlow's ``FusedBatchNormV3`` (oneDNN's kernel on CPUs) makes one
pass for the statistics and one for the normalization. Everywhere else (inference, other
backends, a frozen layer, settings the kernel lacks) it is Keras's layer.
"""

from __future__ import annotations

import keras
from keras import ops

# TensorFlow's fused kernel raises epsilon to this minimum (cuDNN's requirement) on every device.
_FUSED_MIN_EPSILON = 1.001e-5


@keras.saving.register_keras_serializable(package="nin_keras")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` with TensorFlow's fused kernel for training batches.

    Computes what Keras's layer computes: the batch's mean and (biased) variance normalize it,
    and the moving statistics follow ``moving = moving * momentum + batch * (1 - momentum)``.
    The kernel reports the variance with Bessel's correction, which is undone for the moving
    variance. The fused path runs when the backend is TensorFlow, ``training`` is true, the
    layer is trainable, the input is 4-D with channels last, no mask is given, ``center`` and
    ``scale`` are on, ``renorm`` and ``synchronized`` are off and ``epsilon`` is at least the
    kernel's minimum (1.001e-5); otherwise Keras's own computation runs.

    Args:
        Those of ``keras.layers.BatchNormalization``.

    Input shape: any (the fused path: 4-D ``(batch, rows, cols, channels)``).
    Output shape: the input's.

    Example:
    >>> norm = FusedBatchNormalization()
    >>> print(norm(keras.ops.ones((2, 4, 4, 3)), training=True).shape)
    (2, 4, 4, 3)
    """

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        # Scale, offset and the statistics stay float32 while x may be bfloat16 or float16: the
        # kernel computes in float32 either way, as Keras's layer does.
        y, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=inputs, scale=ops.cast(self.gamma, "float32"), offset=ops.cast(self.beta, "float32"),
            mean=tf.constant([], "float32"), variance=tf.constant([], "float32"), epsilon=self.epsilon,
            exponential_avg_factor=1.0, data_format="NHWC", is_training=True)
        count = ops.cast(ops.prod(ops.shape(inputs)[:-1]), "float32")
        biased = variance * ops.maximum(count - 1.0, 0.0) / count
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + biased * (1.0 - self.momentum))
        return ops.cast(y, self.compute_dtype)

    def _fusable(self, inputs, training, mask) -> bool:
        return bool(training) and self.trainable and mask is None and keras.backend.backend() == "tensorflow" \
            and len(inputs.shape) == 4 and self.axis in (-1, 3) and self.center and self.scale \
            and not self.renorm and not self.synchronized and self.epsilon >= _FUSED_MIN_EPSILON
