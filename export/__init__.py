"""Exporters to SavedModel, TFLite, ONNX and a web page, and parity checks (``nin_keras.export``).

Running the artifacts is ``nin_keras.deploy`` (NumPy and the runtime, no TensorFlow).

Example:
    >>> from nin_keras.export import export
    >>> from nin_keras.deploy import Predictor
    >>> paths = export("nin_cifar10", formats=("savedmodel", "tflite", "onnx"), out_dir="out")
    >>> Predictor(paths["onnx"]).classify(["cat.jpg"], top_k=3)

Names load on first use, so ``nin_keras.export.runtime`` and ``nin_keras.export.predictor``
import without TensorFlow.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

from nin_keras.lazy import lazy_exports

_EXPORTS = {
    "FORMATS": "exporter",
    "QUANTIZE_MODES": "exporter",
    "export": "exporter",
    "resolve_source": "exporter",
    "ParityTolerance": "parity",
    "parity_report": "parity",
}

__all__ = sorted(_EXPORTS)


_lazy_getattr, __dir__ = lazy_exports(__name__, _EXPORTS)


def __getattr__(name: str) -> Any:
    if name == "Predictor":
        warnings.warn("nin_keras.export.Predictor is deprecated; import it from nin_keras.deploy.",
                      DeprecationWarning, stacklevel=2)
        return importlib.import_module("nin_keras.export.predictor").Predictor
    return _lazy_getattr(name)
