"""Model zoo: registry, presets, weight download and training recipes (``nin_keras.zoo``).

Example:
    >>> from nin_keras import zoo
    >>> zoo.list_models(pretrained=True)
    >>> classifier = zoo.ImageClassifier.from_preset("nin_mnist")   # a preset: raw images in
    >>> classifier.classify(uint8_images, top_k=3)
    >>> classifier.backbone, classifier.class_names, classifier.metadata
    >>> classifier.save_to_preset("my_preset")
    >>> network = zoo.create_model("nin_mnist", pretrained=True)    # an architecture (timm style)

One entry per idea: a preset is ``ImageClassifier.from_preset``, an architecture
``create_model``. ``from_preset``, ``load_preset``, ``inference_model``, ``Preset`` and
``build_model`` are deprecated aliases (``nin_keras.zoo.presets``, ``builder``) that warn and
work as before.

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
    "save_preset": "preset_writer",
    # Deprecated aliases of ImageClassifier.from_preset and ImageClassifier (they warn).
    "Preset": "presets",
    "load_preset": "presets",
    "from_preset": "presets",
    "inference_model": "presets",
    "transfer_weights": "transfer",
    "fetch": "download",
    "import_caffe_preset": "caffe_import",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
