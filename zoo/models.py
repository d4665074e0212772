"""The zoo's models: one registered architecture per name, with the weight sets published for it.

Paper errors are test errors (%) without data augmentation: NIN from Lin, Chen & Yan (2014)
Tables 1-5, Maxout from Goodfellow et al. (2013), MIN from Chang & Chen (2015; 93.25% accuracy). ``*_bn`` variants put batch normalization after
every convolution (a modern, faster-training variant the papers do not have, so no paper error).

The weight sets come from the weights index (``zoo/weights/index.json``, see
``nin_keras.zoo.index``), which ``python -m nin_keras.zoo.publish`` regenerates when it publishes
a preset folder ``zoo/weights/<model>.<tag>/``; nothing about them is written here. Models
without one have no weights: nothing was trained for them here (CIFAR-100 and SVHN are not
available on this machine).
"""

from __future__ import annotations

from nin_keras import models
from nin_keras.zoo.index import published, read_index
from nin_keras.zoo.registry import Builder, register_model

_PUBLISHED = read_index()


def _register(builder: Builder, dataset: str, paper_error: float | None = None) -> None:
    """Register ``builder`` under its own name, with the weights the index publishes for it."""
    name = builder.__name__
    register_model(builder, dataset=dataset, paper_error=paper_error, pretrained=published(name, _PUBLISHED))


def _register_bn(builder: Builder, dataset: str, about: str) -> None:
    """The batch-normalized variant ``<name>_bn`` of a registered builder."""
    name = f"{builder.__name__}_bn"
    register_model(builder, name=name, dataset=dataset, defaults={"batch_norm": True, "name": name},
                   description=f"{about} with batch normalization after every convolution.",
                   pretrained=published(name, _PUBLISHED))


_register(models.nin_cifar10, "cifar10", 10.41)
_register(models.nin_cifar100, "cifar100", 35.68)
_register(models.nin_svhn, "svhn", 2.35)
_register(models.nin_mnist, "mnist", 0.47)
_register(models.nin_fashion_mnist, "fashion_mnist")
_register(models.maxout_mnist, "mnist", 0.94)
_register(models.maxout_conv_mnist, "mnist", 0.45)
_register(models.maxout_cifar10, "cifar10", 11.68)
_register(models.nin_fc_cifar10, "cifar10", 11.59)
_register(models.nin_fc_dropout_cifar10, "cifar10", 10.88)
# MIN is batch-normalized by design: its recipe trains ``min_cifar10`` with ``batch_norm=True`` and
# publishing folds the normalizations into this layout, as for ``nin_cifar10.modern``.
_register(models.min_cifar10, "cifar10", 6.75)

_register_bn(models.nin_cifar10, "cifar10", "NIN for CIFAR-10")
_register_bn(models.nin_cifar100, "cifar100", "NIN for CIFAR-100")
_register_bn(models.nin_svhn, "svhn", "NIN for SVHN")
_register_bn(models.nin_mnist, "mnist", "NIN for MNIST")
_register_bn(models.nin_fashion_mnist, "fashion_mnist", "NIN for Fashion-MNIST")
_register_bn(models.maxout_conv_mnist, "mnist", "Convolutional maxout network for MNIST")
