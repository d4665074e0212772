"""Exporters to SavedModel, TFLite and ONNX, parity checks and the Predictor (``nin_keras.export``).

Example:
    >>> from nin_keras.export import export, Predictor
    >>> paths = export("nin_cifar10", formats=("savedmodel", "tflite", "onnx"), out_dir="out")
    >>> Predictor(paths["onnx"]).predict(["cat.jpg"], top_k=3)
"""

from nin_keras.export.exporter import FORMATS, QUANTIZE_MODES, export, resolve_source
from nin_keras.export.parity import ParityTolerance, parity_report
from nin_keras.export.predictor import Predictor

__all__ = ["FORMATS", "QUANTIZE_MODES", "ParityTolerance", "Predictor", "export",
           "parity_report", "resolve_source"]
