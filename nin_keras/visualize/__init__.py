"""Look inside trained models: class confidence maps, CAM, deconvnet projections, filters, curves.

Every function takes a built model (a network, or an ``ImageClassifier`` holding preprocessing and
network) and images as that model takes them, and writes PNG files (matplotlib, headless) under
``nin_keras_visualize/`` unless given a path.

Example:
    >>> from nin_keras import zoo, visualize
    >>> model = zoo.ImageClassifier.from_preset("nin_cifar10")
    >>> visualize.plot_confidence_maps(model, uint8_images, labels=labels)
    >>> visualize.plot_top_patches(model, uint8_images, "mlpconv2", channel=17)
"""

from nin_keras.visualize.cam import class_activation_maps, plot_class_activation_maps
from nin_keras.visualize.confidence import class_confidence_maps, plot_class_maps, plot_confidence_maps
from nin_keras.visualize.curves import load_metrics, plot_training_curves
from nin_keras.visualize.deconvnet import (
    TopActivation,
    deconv_projection,
    max_pool_switches,
    plot_deconv,
    plot_top_patches,
    receptive_field,
    top_activations,
)
from nin_keras.visualize.filters import first_layer_filters, plot_filters
from nin_keras.visualize.rendering import DEFAULT_OUTPUT_DIR, display_images

__all__ = [
    "DEFAULT_OUTPUT_DIR",
    "TopActivation",
    "class_activation_maps",
    "class_confidence_maps",
    "deconv_projection",
    "display_images",
    "first_layer_filters",
    "load_metrics",
    "max_pool_switches",
    "plot_class_activation_maps",
    "plot_class_maps",
    "plot_confidence_maps",
    "plot_deconv",
    "plot_filters",
    "plot_top_patches",
    "plot_training_curves",
    "receptive_field",
    "top_activations",
]
