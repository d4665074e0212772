"""Which parts of nin-keras need TensorFlow, and the error they raise without it.

The layers (``nin_keras.layers``), architectures (``nin_keras.models``) and presets
(``nin_keras.zoo``: load, predict, ``fit``) use ``keras.ops`` only and run on any Keras 3 backend;
``tests_jax/`` checks them on JAX without TensorFlow installed. The data pipelines
(``nin_keras.data.pipeline`` and ``.sources``, ``tf.data``; ``nin_keras.data`` itself and its input
policy import without it), the training loop (``nin_keras.train``, ``tf.distribute``), the
exporters (``nin_keras.export``) and the deconvnet (``nin_keras.visualize``) are built on TensorFlow
itself; their modules import it through ``import_tensorflow`` so that, without it, the error names
the module that needs it instead of a bare ``No module named 'tensorflow'``.
"""

from __future__ import annotations

from types import ModuleType


def import_tensorflow(module: str) -> ModuleType:
    """Import and return ``tensorflow`` for ``module``, or say that ``module`` requires it.

    Args:
        module: the importing module's ``__name__``, named in the error.

    Returns:
        The ``tensorflow`` module.

    Raises:
        ImportError: TensorFlow is not installed; the message says "``module`` requires
            TensorFlow" and what runs without it.

    Example:
        >>> tf = import_tensorflow(__name__)   # at the top of a TensorFlow-only module
    """
    try:
        import tensorflow
    except ModuleNotFoundError as err:
        if err.name != "tensorflow":  # TensorFlow is there but one of its own imports failed
            raise
        raise ImportError(
            f"{module} requires TensorFlow, which is not installed (pip install tensorflow). "
            "Without it, nin_keras.layers, nin_keras.models and the zoo's presets (load, predict, "
            "fit) run on any Keras 3 backend, e.g. KERAS_BACKEND=jax.",
            name=module,
        ) from err
    return tensorflow
