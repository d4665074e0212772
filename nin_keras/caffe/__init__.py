"""Import Caffe models: a ``.caffemodel`` reader (no Caffe needed) and a converter to Keras NINs.

Example:
    >>> from nin_keras.caffe import load_caffe_weights, read_caffemodel
    >>> caffe_model = read_caffemodel("cifar10_nin.caffemodel")
    >>> model = load_caffe_weights(nin_keras.models.nin_cifar10(), caffe_model)
"""

from nin_keras.caffe.convert import NIN_LAYER_MAPPING, caffe_to_keras_weights, load_caffe_weights
from nin_keras.caffe.reader import CaffeLayer, CaffeModel, parse_caffemodel, read_caffemodel

__all__ = ["CaffeLayer", "CaffeModel", "NIN_LAYER_MAPPING", "caffe_to_keras_weights", "load_caffe_weights",
           "parse_caffemodel", "read_caffemodel"]
