"""Full float32 precision for the whitening layers' matrix products and convolutions.

NVIDIA GPUs since Ampere run float32 matrix products and convolutions in TF32 (a 10-bit mantissa)
by default under JAX and TensorFlow. A network trains fine that way, but a whitening layer sums
thousands of products of both signs: on an H200, ``ZCAWhitening`` came out up to 0.019 off a
float64 reference (outputs up to 8.6) and ``LocalContrastNormalization`` 1e-3 off the CPU result.
``keras.ops`` has no per-op precision argument (Keras 3.15), so ``float32_precision()`` asks each
backend in the way it offers:

- JAX: ``jax.default_matmul_precision("float32")`` around the layer's ops, so every
  ``dot_general`` and ``conv_general_dilated`` traced inside records ``precision=HIGHEST``. The
  request is part of the traced computation: it holds under ``jit`` and on every device, and
  nothing outside the layer changes.
- TensorFlow: TF32 is one process-wide switch, read when a kernel runs, not when a graph is traced,
  so it cannot be limited to the layer. The layer turns it off for the whole process
  (``tf.config.experimental.enable_tensor_float_32_execution(False)``) and, where TensorFlow sees
  a GPU, warns once that it did: other float32 GPU work of the process then runs in full float32
  as well (slower on GPUs with TF32 units; float16 and bfloat16 work is unaffected).
- PyTorch (untested, see the README): ``torch.backends.cuda.matmul.allow_tf32`` and
  ``torch.backends.cudnn.allow_tf32`` are off during the call and put back after it (PyTorch runs
  eagerly, so the flags are read inside the call).
- Other backends (NumPy, OpenVINO) compute float32 on the CPU in full precision already.

On a CPU the request changes nothing: float32 is computed in float32 there anyway.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import keras


@contextlib.contextmanager
def float32_precision() -> Iterator[None]:
    """Compute the float32 matrix products and convolutions inside the block in full float32.

    Example:
        >>> with float32_precision():
        ...     y = keras.ops.matmul(x, whitening)
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        with jax.default_matmul_precision("float32"):
            yield
    elif backend == "tensorflow":
        _turn_off_tensorflow_tf32()
        yield
    elif backend == "torch":
        with _torch_without_tf32():
            yield
    else:
        yield


def _turn_off_tensorflow_tf32() -> None:
    import tensorflow as tf

    if not tf.config.experimental.tensor_float_32_execution_enabled():
        return
    tf.config.experimental.enable_tensor_float_32_execution(False)
    if tf.config.list_physical_devices("GPU"):
        warnings.warn(
            "nin_keras whitening layers turned TensorFlow's TF32 execution off for this process "
            "(tf.config.experimental.enable_tensor_float_32_execution(False)): in TF32 their "
            "float32 outputs are off by up to 1e-2. Other float32 GPU matrix products and "
            "convolutions now run in full float32 too.", RuntimeWarning)


@contextlib.contextmanager
def _torch_without_tf32() -> Iterator[None]:
    import torch

    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
