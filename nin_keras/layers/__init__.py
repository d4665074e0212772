"""Network-in-Network building blocks as Keras 3 layers (all registered under package "nin_keras")."""

import keras

from nin_keras.layers.batch_norm import FusedBatchNormalization
from nin_keras.layers.caffe_pooling import CaffePooling2D
from nin_keras.layers.dropconnect import DropConnect
from nin_keras.layers.gap_head import GlobalAveragePoolingHead
from nin_keras.layers.maxout import Maxout, MaxoutConv2D
from nin_keras.layers.maxout_mlpconv import MaxoutMLPConv
from nin_keras.layers.mlpconv import MLPConv
from nin_keras.layers.stochastic_pooling import StochasticPooling2D
from nin_keras.layers.augment import RandomPadCrop
from nin_keras.layers.contrast import GlobalContrastNormalization
from nin_keras.layers.lcn import LocalContrastNormalization
from nin_keras.layers.zca import ZCAWhitening
from nin_keras.layers.conv_whitening import ConvWhitening
from nin_keras.layers.mixing import MixUpCutMix

#: Layer types that count as preprocessing: an ``ImageClassifier``'s leading layers (the only ones a
#: preset's preprocessing spec may hold), split off by ``export(..., include_preprocessing=False)``,
#: kept float32 inside int8 artifacts and skipped by the deconvnet.
PREPROCESSING_LAYERS = (GlobalContrastNormalization, ZCAWhitening, ConvWhitening,
                        LocalContrastNormalization, keras.layers.Rescaling, keras.layers.Normalization)
