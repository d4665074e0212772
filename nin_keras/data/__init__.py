"""Data sets as ``tf.data`` of ``(uint8 HWC image, int64 label)``, and the batched input pipeline.

Sources: the publishers' files in a local data folder (CIFAR pickles and binary batches, SVHN
``.mat``, MNIST/Fashion-MNIST idx, ``.npz`` arrays, class-folder images or a tar of them) or
tensorflow-datasets. See ``load_dataset`` and ``make_pipeline``; ``InputPolicy`` turns any image
file into a model's input.
"""

import importlib

# Every name loads on first use: the input policy (what deployment reads images with) needs only
# Pillow and NumPy, the catalog needs Keras, the tf.data parts TensorFlow.
_EXPORTS = {
    "DATASET_NAMES": "nin_keras.data.catalog",
    "DatasetInfo": "nin_keras.data.catalog",
    "dataset_info": "nin_keras.data.catalog",
    "InputPolicy": "nin_keras.data.input_policy",
    "default_policy": "nin_keras.data.input_policy",
    "data_dirs": "nin_keras.data.locate",
    "make_pipeline": "nin_keras.data.pipeline",
    "load_dataset": "nin_keras.data.sources",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
