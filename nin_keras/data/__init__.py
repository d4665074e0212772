"""Data sets as ``tf.data`` of ``(uint8 HWC image, int64 label)``, and the batched input pipeline.

Sources: the publishers' files in a local data folder (CIFAR pickles and binary batches, SVHN
``.mat``, MNIST/Fashion-MNIST idx, ``.npz`` arrays, class-folder images or a tar of them) or
tensorflow-datasets. See ``load_dataset`` and ``make_pipeline``; ``InputPolicy`` turns any image
file into a model's input.
"""

from nin_keras.data.catalog import DATASET_NAMES, DatasetInfo, dataset_info
from nin_keras.data.input_policy import InputPolicy, default_policy
from nin_keras.data.locate import data_dirs

# The tf.data parts load on first use, so that the TensorFlow-free ones (the catalog, the input
# policy that presets use) import on any Keras backend.
_TENSORFLOW_ONLY = {"make_pipeline": "nin_keras.data.pipeline", "load_dataset": "nin_keras.data.sources"}


def __getattr__(name: str):
    if name in _TENSORFLOW_ONLY:
        import importlib

        return getattr(importlib.import_module(_TENSORFLOW_ONLY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DATASET_NAMES", "DatasetInfo", "InputPolicy", "data_dirs", "dataset_info",
           "default_policy", "load_dataset", "make_pipeline"]
