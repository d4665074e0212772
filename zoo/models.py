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
from nin_keras.zoo.registry import PretrainedConfig, WeightsFile, register_model

# The authors' own Caffe NIN, converted by `nin-keras import-caffe` (see the preset's metadata.json).
NIN_CIFAR10_CAFFE = PretrainedConfig(
    tag="caffe",
    files=(
        WeightsFile("config.json", "0bbb738fb6cee95065d151cff5e9dc7a69883c15fed7237a8d238d0facc2e9d0", 107),
        WeightsFile("metadata.json", "94ab27d795fc413e2d14442e4eae7c79719886f3aac3ca3b2d632476c8c3c27e", 5166),
        WeightsFile("model.weights.h5", "b787dea9ee3c5e4a34e964d5f9c7967a2bd1d4287851cb44ccaad142cdab7ac0", 3898088),
        WeightsFile("preprocessing.weights.h5", "7d814ec465f53286300cbcac8051feecb2803030afb5a8136aefbcee964aed2c", 18899696),
    ),
    dataset="cifar10",
    preprocessing="GlobalContrastNormalization → ZCAWhitening",
    metrics={"test_error": 19.47, "test_accuracy": 80.53, "test_loss": 0.9463},
    command="nin-keras eval zoo/weights/nin_cifar10.caffe --data cifar10",
    paper_error=10.41,
    license="BSD (per the Caffe Model Zoo entry)",
    source="the authors' Caffe model (Caffe Model Zoo gist mavenlin/e56253735ef32c3c296d) via nin-keras import-caffe",
    evaluated_on="CIFAR-10 (JPEG copy) test split",
)



# The Caffe weights above with the dense ZCA distilled into a 7x7 ConvWhitening (444 numbers
# instead of 9.4 M; 13.6 KB of preprocessing weights instead of 18.9 MB): `nin-keras compact`.
# Kernel size, padding and fitting-set size were chosen with benchmarks/whitening.py.
NIN_CIFAR10_CAFFE_COMPACT = PretrainedConfig(
    tag="caffe_compact",
    files=(
        WeightsFile("config.json", "0bbb738fb6cee95065d151cff5e9dc7a69883c15fed7237a8d238d0facc2e9d0", 107),
        WeightsFile("metadata.json", "d21ed8385908506271d5a321a540b704f343948722b8b04756f1f2af408235f7", 4105),
        WeightsFile("model.weights.h5", "b787dea9ee3c5e4a34e964d5f9c7967a2bd1d4287851cb44ccaad142cdab7ac0", 3898088),
        WeightsFile("preprocessing.weights.h5", "0c6e2968c64d8a44469a2cd505f8deba478057e75f32782676cec971ade71869", 13640),
    ),
    dataset="cifar10",
    preprocessing="GlobalContrastNormalization → ConvWhitening",
    metrics={"test_error": 19.12, "test_accuracy": 80.88, "test_loss": 0.962559, "test_examples": 10000},
    command="nin-keras compact nin_cifar10.caffe --out zoo/weights/nin_cifar10.caffe_compact",
    paper_error=10.41,
    license="BSD (per the Caffe Model Zoo entry)",
    source="the authors' Caffe weights (nin_cifar10.caffe) with the whitening distilled into a 7x7 ConvWhitening "
           "(symmetric padding, fitted on 3,000 training images) by nin_keras.zoo.compact",
    evaluated_on="CIFAR-10 (JPEG copy) test split",
)

# Trained here: `nin-keras train nin_cifar10_fast` on the CIFAR-10 JPEG copy, a CPU budget of 8 epochs
# under mixed_bfloat16 (40 min of summed epoch time on the 2-core Xeon with AMX); log and curves in
# zoo/runs/nin_cifar10_fast/. The recipe stores the ZCA matrix in float16.
NIN_CIFAR10_FAST = PretrainedConfig(
    tag="fast",
    files=(
        WeightsFile("config.json", "904660a6ce7b44a04b89c93b8c7f70e1de78809f5086c8cb6d4950ccaed83af9", 234),
        WeightsFile("metadata.json", "ddddb8ee8a2c52473a6406223d7492a2e15dafd9a1bdcb1541f60cfc1efcf2a4", 8646),
        WeightsFile("model.weights.h5", "204e8cb7f8aad20786595e880519cd5c42cfed599f39d614ee3791e06cc62892", 3950024),
        WeightsFile("preprocessing.weights.h5", "4faa45808540f69834aecd35b3d72ee7dcaa1836b9d1b773d2bc037b4c88e848", 18899696),
    ),
    dataset="cifar10",
    preprocessing="GlobalContrastNormalization → ZCAWhitening",
    metrics={"test_error": 17.6, "test_accuracy": 82.4, "test_loss": 0.557065, "test_examples": 10000},
    command="nin-keras train nin_cifar10_fast --out runs/nin_cifar10_fast",
    paper_error=8.81,
    license="BSD-3-Clause",
    source="trained with nin-keras recipe 'nin_cifar10_fast' (8 epochs)",
    evaluated_on="CIFAR-10 (JPEG copy) test split",
)


# Trained here: `nin-keras train nin_mnist_fast` (log and curves in zoo/runs/nin_mnist_fast/).
NIN_MNIST_FAST = PretrainedConfig(
    tag="fast",
    files=(
        WeightsFile("config.json", "e431f52743d25712f3f75da7b346bc3d98aa049e3c7e415716839301c688a96d", 233),
        WeightsFile("metadata.json", "8fb43d7b0e73ef4c22267392312cd456cd9940eb68b8f0972bb934a621f62185", 6238),
        WeightsFile("model.weights.h5", "6d02b87e9bd831400d7634740d3f950bb8a5298b070e3fbbc00be1ef57379484", 1172392),
        WeightsFile("preprocessing.weights.h5", "aadc86fb00e241095a2638bf7aa0e24003d8a818c1932b2d3ee2d3c3aca95202", 8888),
    ),
    dataset="mnist",
    preprocessing="Rescaling",
    metrics={"test_error": 0.44, "test_accuracy": 99.56, "test_loss": 0.085401, "test_examples": 10000},
    command="nin-keras train nin_mnist_fast --out runs/nin_mnist_fast",
    paper_error=0.47,
    license="BSD-3-Clause",
    source="trained with nin-keras recipe 'nin_mnist_fast'",
    evaluated_on="mnist test split",
)

# Trained here: `nin-keras train nin_fashion_mnist_fast`, one 30-epoch one-cycle run (about 2 min an
# epoch on the 2-core Xeon with AMX); log and curves in zoo/runs/nin_fashion_mnist_fast/. 94.04% test
# accuracy (goal >= 93.5%).
NIN_FASHION_MNIST_FAST = PretrainedConfig(
    tag="fast",
    files=(
        WeightsFile("config.json", "13541dc13aad132059f6bdd178e72a96f1086bff3f71ca4e1afe145dfcea9c7b", 240),
        WeightsFile("metadata.json", "6003b1de5d11020fb85b2555f04e3840ef90894e61b7e6fe95d0cb1754c5a913", 12510),
        WeightsFile("model.weights.h5", "a5b39385f2f9e1f279abcfcfc1a496ebfac1f27c9c972ea2402b78e0f5820334", 1172392),
        WeightsFile("preprocessing.weights.h5", "aadc86fb00e241095a2638bf7aa0e24003d8a818c1932b2d3ee2d3c3aca95202", 8888),
    ),
    dataset="fashion_mnist",
    preprocessing="Rescaling",
    metrics={"test_error": 5.96, "test_accuracy": 94.04, "test_loss": 0.237617, "test_examples": 10000},
    command="nin-keras train nin_fashion_mnist_fast --out runs/nin_fashion_mnist_fast",
    paper_error=None,
    license="BSD-3-Clause",
    source="trained with nin-keras recipe 'nin_fashion_mnist_fast'",
    evaluated_on="fashion_mnist test split",
)

# Trained here: `nin-keras train maxout_mnist` (log and curves in zoo/runs/maxout_mnist/).
MAXOUT_MNIST_COSINE = PretrainedConfig(
    tag="cosine",
    files=(
        WeightsFile("config.json", "7646c73ee0592b557d9d698f7f5c318629e6b4a4e831ddd2c29ddbddb068b03e", 191),
        WeightsFile("metadata.json", "ddf57105d19771aacc6431e424986aa6d537a8ca3498603c2bb2a36b22969948", 10680),
        WeightsFile("model.weights.h5", "ed93da7fc2a91f78891fd8ff7be156aeb5482a88fbfe76cc680ebbf800fff885", 4960312),
        WeightsFile("preprocessing.weights.h5", "aadc86fb00e241095a2638bf7aa0e24003d8a818c1932b2d3ee2d3c3aca95202", 8888),
    ),
    dataset="mnist",
    preprocessing="Rescaling",
    metrics={"test_error": 1.29, "test_accuracy": 98.71, "test_loss": 0.047438, "test_examples": 10000},
    command="nin-keras train maxout_mnist --out runs/maxout_mnist",
    paper_error=0.94,
    license="BSD-3-Clause",
    source="trained with nin-keras recipe 'maxout_mnist'",
    evaluated_on="mnist test split",
)

@register_model(dataset="cifar10", paper_error=10.41, pretrained=[NIN_CIFAR10_CAFFE, NIN_CIFAR10_FAST, NIN_CIFAR10_CAFFE_COMPACT])
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


@register_model(dataset="mnist", paper_error=0.47, pretrained=[NIN_MNIST_FAST])
def nin_mnist(**kwargs: Any) -> keras.Model:
    """NIN for MNIST: the CIFAR-10 layout with fewer maps (Table 4)."""
    return models.nin_mnist(**kwargs)


@register_model(dataset="fashion_mnist", pretrained=[NIN_FASHION_MNIST_FAST])
def nin_fashion_mnist(**kwargs: Any) -> keras.Model:
    """NIN for Fashion-MNIST: the MNIST network (not in the paper)."""
    return models.nin_fashion_mnist(**kwargs)


@register_model(dataset="mnist", paper_error=0.94, pretrained=[MAXOUT_MNIST_COSINE])
def maxout_mnist(**kwargs: Any) -> keras.Model:
    """Permutation-invariant maxout MLP for MNIST (Goodfellow et al. 2013, Table 1)."""
    return models.maxout_mnist(**kwargs)


@register_model(dataset="mnist", paper_error=0.45)
def maxout_conv_mnist(**kwargs: Any) -> keras.Model:
    """Convolutional maxout network for MNIST (the NIN paper's Table 4 baseline)."""
    return models.maxout_conv_mnist(**kwargs)


@register_model(dataset="cifar10", paper_error=11.68)
def maxout_cifar10(**kwargs: Any) -> keras.Model:
    """Convolutional maxout network for CIFAR-10 (the NIN paper's Table 1 baseline)."""
    return models.maxout_cifar10(**kwargs)


@register_model(dataset="cifar10", paper_error=11.59)
def nin_fc_cifar10(**kwargs: Any) -> keras.Model:
    """Section 4.6 baseline: NIN CIFAR-10 with a fully connected top instead of GAP (Table 5)."""
    return models.nin_fc_cifar10(**kwargs)


@register_model(dataset="cifar10", paper_error=10.88)
def nin_fc_dropout_cifar10(**kwargs: Any) -> keras.Model:
    """Section 4.6 baseline: NIN CIFAR-10 with dropout and a fully connected top (Table 5)."""
    return models.nin_fc_dropout_cifar10(**kwargs)


def _register_bn(builder, dataset: str, about: str) -> None:
    """The batch-normalized variant ``<name>_bn`` of a registered builder."""
    name = f"{builder.__name__}_bn"
    defaults = {"batch_norm": True, "name": name}
    register_model(builder, name=name, dataset=dataset, defaults=defaults,
                   description=f"{about} with batch normalization after every convolution.")


_register_bn(nin_cifar10, "cifar10", "NIN for CIFAR-10")
_register_bn(nin_cifar100, "cifar100", "NIN for CIFAR-100")
_register_bn(nin_svhn, "svhn", "NIN for SVHN")
_register_bn(nin_mnist, "mnist", "NIN for MNIST")
_register_bn(nin_fashion_mnist, "fashion_mnist", "NIN for Fashion-MNIST")
_register_bn(maxout_conv_mnist, "mnist", "Convolutional maxout network for MNIST")
