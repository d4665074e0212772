"""The zoo's models: one registered builder per name, with the weight sets published for it.

Paper errors are test errors (%) without data augmentation: NIN from Lin, Chen & Yan (2014)
Tables 1-5, Maxout from Goodfellow et al. (2013). ``*_bn`` variants put batch normalization after
every convolution (a modern, faster-training variant the papers do not have, so no paper error).

Weight sets (``pretrained=[...]``) are added here when a preset is published under
``zoo/weights/<model>.<tag>/``; ``presets.preset_file_specs(folder)`` gives its ``files``.
Models without one have no weights: nothing was trained for them here (CIFAR-100 and SVHN are not
available on this machine).
"""

from __future__ import annotations

from typing import Any

import keras

from nin_keras import models
from nin_keras.zoo.registry import register_model


@register_model(dataset="cifar10", paper_error=10.41)
def nin_cifar10(**kwargs: Any) -> keras.Model:
    """NIN for CIFAR-10, layer for layer the original Caffe model (Table 1)."""
    return models.nin_cifar10(**kwargs)


@register_model(dataset="cifar100", paper_error=35.68)
def nin_cifar100(**kwargs: Any) -> keras.Model:
    """NIN for CIFAR-100: the CIFAR-10 network with 100 output maps (Table 2)."""
    return models.nin_cifar100(**kwargs)


@register_model(dataset="svhn", paper_error=2.35)
def nin_svhn(**kwargs: Any) -> keras.Model:
    """NIN for SVHN: the CIFAR-10 layout (Table 3)."""
    return models.nin_svhn(**kwargs)


@register_model(dataset="mnist", paper_error=0.47)
def nin_mnist(**kwargs: Any) -> keras.Model:
    """NIN for MNIST: the CIFAR-10 layout with fewer maps (Table 4)."""
    return models.nin_mnist(**kwargs)


@register_model(dataset="fashion_mnist")
def nin_fashion_mnist(**kwargs: Any) -> keras.Model:
    """NIN for Fashion-MNIST: the MNIST network (not in the paper)."""
    return models.nin_fashion_mnist(**kwargs)


_BN = "with batch normalization after every convolution"
register_model(nin_cifar10, name="nin_cifar10_bn", dataset="cifar10", defaults={"batch_norm": True, "name": "nin_cifar10_bn"}, description=f"NIN for CIFAR-10 {_BN}.")
register_model(nin_cifar100, name="nin_cifar100_bn", dataset="cifar100", defaults={"batch_norm": True, "name": "nin_cifar100_bn"}, description=f"NIN for CIFAR-100 {_BN}.")
register_model(nin_mnist, name="nin_mnist_bn", dataset="mnist", defaults={"batch_norm": True, "name": "nin_mnist_bn"}, description=f"NIN for MNIST {_BN}.")
register_model(nin_fashion_mnist, name="nin_fashion_mnist_bn", dataset="fashion_mnist", defaults={"batch_norm": True, "name": "nin_fashion_mnist_bn"}, description=f"NIN for Fashion-MNIST {_BN}.")
