"""Deployment: ``Predictor`` runs exported TFLite and ONNX artifacts with NumPy, Pillow and the
runtime alone (LiteRT, ONNX Runtime or OpenVINO: no TensorFlow, no Keras), and SavedModel folders
and presets where TensorFlow or Keras is installed. The one import path for ``Predictor``.

Example:
    >>> from nin_keras.deploy import Predictor
    >>> Predictor("out/nin_cifar10.onnx").classify(["cat.jpg"], top_k=3)
"""

from nin_keras.export.predictor import Predictor, artifact_format

__all__ = ["Predictor", "artifact_format"]
