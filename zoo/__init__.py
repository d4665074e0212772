"""Model zoo: registry, presets, weight download and training recipes (``nin_keras.zoo``).

Example:
    >>> from nin_keras import zoo
    >>> zoo.list_models(pretrained=True)
    >>> classifier = zoo.from_preset("nin_mnist")   # raw images in, with its preprocessing
    >>> classifier.classify(uint8_images, top_k=3)
    >>> classifier.backbone                          # the bare network
    >>> preset = zoo.load_preset("nin_mnist")       # network + fitted preprocessing + metadata

Names are imported on first use, so ``nin_keras.zoo.download`` works without loading TensorFlow.
"""

from __future__ import annotations

from nin_keras.lazy import lazy_exports

_EXPORTS = {
    "register_model": "registry",
    "list_models": "registry",
    "create_model": "builder",
    "build_model": "builder",
    "get_model_entry": "registry",
    "ModelEntry": "registry",
    "PretrainedConfig": "pretrained",
    "WeightsFile": "pretrained",
    "ImageClassifier": "classifier",
    "Preset": "presets",
    "save_preset": "preset_writer",
    "load_preset": "presets",
    "from_preset": "presets",
    "inference_model": "presets",
    "transfer_weights": "transfer",
    "fetch": "download",
    "import_caffe_preset": "caffe_import",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
