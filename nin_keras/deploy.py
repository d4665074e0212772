"""Deployment entry point: ``Predictor`` over exported SavedModel, TFLite and ONNX artifacts (and presets).

Example:
    >>> from nin_keras.deploy import Predictor
    >>> Predictor("out/nin_cifar10.onnx").predict(["cat.jpg"], top_k=3)
"""

from nin_keras.export.predictor import Predictor, artifact_format

__all__ = ["Predictor", "artifact_format"]
