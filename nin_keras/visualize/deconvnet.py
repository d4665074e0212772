"""Deconvnet projections (Zeiler & Fergus 2014, "Visualizing and Understanding Convolutional Networks").

One activation of a chosen layer is mapped back to the network's input by running the network
backwards: each max pooling is undone by *unpooling* with the *switches* recorded on the forward
pass (a value goes back to the position that won its window), each ReLU by *rectifying* the signal
going back, and each convolution by its *transposed filters* (``conv2d_transpose`` with the same
kernel, no bias). Average pooling hands each value back to its window evenly. The result, with the
input's shape, shows which input pattern excites that activation; it is non-zero only inside the
unit's receptive field.

Supported layers: ``MLPConv`` (its k×k and 1×1 convolutions, with or without batch
normalization), ``CaffePooling2D`` (max and average), Keras ``Conv2D``, ``MaxPooling2D``,
``AveragePooling2D``, ``BatchNormalization``, ``ReLU``/``Activation`` and dropout layers. Preprocessing
layers in front of the network (GCN, ZCA, LCN, rescaling) are where the projection stops: it is
an image in the network's input space (for a whitened model, a whitened image; the drawing
functions un-whiten it).

The parts, one job each: ``reverse_pass.py`` (the switches and the reverse pass,
``deconv_projection``), ``receptive_fields.py``, ``activation_search.py`` (``top_activations``),
``deconv_plots.py`` (the two figures) and ``deconv_chain.py`` (which layers can be reversed and
their window geometry, shared by the others). This module gathers their public names.
"""

from nin_keras.visualize.activation_search import TopActivation, top_activations
from nin_keras.visualize.deconv_plots import plot_deconv, plot_top_patches
from nin_keras.visualize.receptive_fields import receptive_field
from nin_keras.visualize.reverse_pass import deconv_projection, max_pool_switches

__all__ = [
    "TopActivation",
    "deconv_projection",
    "max_pool_switches",
    "plot_deconv",
    "plot_top_patches",
    "receptive_field",
    "top_activations",
]
