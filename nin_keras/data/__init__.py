"""Data sets as ``tf.data`` of ``(uint8 HWC image, int64 label)``, and the batched input pipeline.

Sources: the publishers' files in a local data folder (CIFAR pickles and binary batches, SVHN
``.mat``, MNIST/Fashion-MNIST idx, ``.npz`` arrays, class-folder images or a tar of them) or
tensorflow-datasets. See ``load_dataset`` and ``make_pipeline``; ``InputPolicy`` turns any image
file into a model's input.
"""

from nin_keras.data.catalog import DATASET_NAMES, DatasetInfo, dataset_info
from nin_keras.data.input_policy import InputPolicy, default_policy
from nin_keras.data.locate import data_dirs
from nin_keras.data.pipeline import make_pipeline
from nin_keras.data.sources import load_dataset

__all__ = ["DATASET_NAMES", "DatasetInfo", "InputPolicy", "data_dirs", "dataset_info",
           "default_policy", "load_dataset", "make_pipeline"]
