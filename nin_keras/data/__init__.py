"""Data sets as ``tf.data`` of ``(uint8 HWC image, int64 label)``, and the batched input pipeline.

Sources: the publishers' files in a local data folder (CIFAR pickles and binary batches, SVHN
``.mat``, MNIST/Fashion-MNIST idx, ``.npz`` arrays, class-folder images or a tar of them) or
tensorflow-datasets. See ``load_dataset`` and ``make_pipeline``; ``InputPolicy`` turns any image
file into a model's input.
"""

from nin_keras.lazy import lazy_exports

# Every name loads on first use: the input policy (what deployment reads images with) needs only
# Pillow and NumPy, the catalog needs Keras, the tf.data parts TensorFlow.
_EXPORTS = {
    "DATASET_NAMES": "catalog",
    "DatasetInfo": "catalog",
    "dataset_info": "catalog",
    "InputPolicy": "input_policy",
    "default_policy": "input_policy",
    "data_dirs": "locate",
    "make_pipeline": "pipeline",
    "load_dataset": "sources",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


__all__ = sorted(_EXPORTS)
