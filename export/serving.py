"""The serving function every exporter starts from: one ``tf.function`` with a dynamic batch.

SavedModel, TFLite and ONNX are all traced from the same :class:`ServingModule`, so the three
artifacts share one input name, dtype and shape (``images``: ``float32 [None, H, W, C]``) and one
output (``probabilities``: ``float32 [None, classes]``).
"""

from __future__ import annotations

import keras
from nin_keras.tensorflow_only import import_tensorflow

tf = import_tensorflow(__name__)

from nin_keras.export.runtime import INPUT_NAME, OUTPUT_NAME  # noqa: E402  (after the TensorFlow check)


class ServingModule(tf.Module):
    """A ``tf.Module`` that tracks a Keras model and serves it through ``serve``.

    Args:
        model: a built Keras model with one image input ``(H, W, C)`` and one output per name
            in ``output_names``.
        output_names: what ``serve`` calls the model's outputs, in the model's order; the first
            is the probabilities. The web export adds the per-class confidence maps as a second
            output (``nin_keras.export.web``).

    ``serve(images)`` takes ``float32 [None, H, W, C]`` and returns ``{"probabilities": ...}``
    (and any further named outputs).
    The batch dimension stays ``None`` in the traced signature, so every artifact accepts any
    batch size.

    Example:
        >>> module = ServingModule(model)
        >>> module.serve(tf.zeros([2, 32, 32, 3]))["probabilities"].shape
        TensorShape([2, 10])
    """

    def __init__(self, model: keras.Model, output_names: tuple[str, ...] = (OUTPUT_NAME,)):
        super().__init__(name="nin_keras_serving")
        if len(model.inputs) != 1 or len(model.outputs) != len(output_names):
            raise ValueError(f"model {model.name!r} must have one input and {len(output_names)} "
                             f"output(s) to export, got {len(model.inputs)} inputs and "
                             f"{len(model.outputs)} outputs")
        self.model = model
        self.output_names = tuple(output_names)
        shape = tuple(model.inputs[0].shape[1:])
        if any(d is None for d in shape):
            raise ValueError(f"model {model.name!r} needs a fixed input shape to export, got {shape}")
        self.input_shape = shape
        spec = tf.TensorSpec([None, *shape], tf.float32, name=INPUT_NAME)
        self.serve = tf.function(self._serve, input_signature=[spec], autograph=False)

    def _serve(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        outputs = self.model(images, training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return {name: tf.cast(out, tf.float32) for name, out in zip(self.output_names, outputs)}

    def concrete_function(self):
        """The traced serving function (what the SavedModel and ONNX exporters consume)."""
        return self.serve.get_concrete_function()

    def frozen_function(self):
        """The serving function with every variable folded into a constant.

        The TFLite converter keeps Keras 3 variables as ``VAR_HANDLE``/``READ_VARIABLE`` resource
        ops (which full-integer calibration cannot run) unless the graph is frozen first.
        """
        from tensorflow.python.framework.convert_to_constants import (
            convert_variables_to_constants_v2)

        return convert_variables_to_constants_v2(self.concrete_function())
