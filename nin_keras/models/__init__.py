"""Architecture builders (keras.applications style) and tools to look inside built models."""

from nin_keras.models.baselines import nin_fc_cifar10, nin_fc_dropout_cifar10
from nin_keras.models.introspection import confidence_map_model, count_flops
from nin_keras.models.maxout import maxout_cifar10, maxout_conv_mnist, maxout_mnist
from nin_keras.models.maxout_nin import min_cifar10
from nin_keras.models.nin import (
    nin_cifar10,
    nin_cifar100,
    nin_fashion_mnist,
    nin_mnist,
    nin_svhn,
)
