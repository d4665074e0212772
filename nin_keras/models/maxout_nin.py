"""Maxout Network in Network, MIN (Chang & Chen 2015, "Batch-normalized Maxout Network in Network",
arXiv:1511.02583): the NIN layout with maxout units in place of ReLUs, batch normalization before
every max, and average pooling everywhere.

Each mlpconv is a ``MaxoutMLPConv``: convolution → batch normalization → max over the unit's
pieces, for the k×k convolution and both 1×1 convolutions. Three of them, the first two followed
by average pooling 3/2 and dropout, the third giving one map per class to the global-average-
pooling head; layer names as in ``nin.py`` (``mlpconv1``, ``pool1``, ``dropout1``, ...,
``mlpconv3``, ``head``).

| builder | input | mlpconv units × pieces (kernel) | params | MACs |
|---|---|---|---|---|
| ``min_cifar10`` | 32×32×3 | 192×1-160×5-96×5 (5), 192×1-192×5-192×5 (5), 192×1-192×5-10×5 (3) | 1,604,722 | 496.6 M |

Widths and pieces are those of the authors' own MatConvNet model,
``cnn_cifar_init_mnin.m`` in github.com/JiaRenChang/Batch_Normalized_Maxout_NIN (also
``models.MaxoutNIN`` in vlfeat/autonn, co-written by Chang): NIN's CIFAR-10 widths, k = 5 pieces
on the 1×1 convolutions, and one piece on the k×k convolution, which therefore has no
nonlinearity (conv → BN straight into the next convolution). The paper reports 93.25% on
CIFAR-10 without data augmentation (6.75% error).

Parameters are counted in the layout weights are published in (``batch_norm=False``: each
normalization folded into its convolution's kernel and bias by ``nin_keras.models.folding``).
MIN is trained with ``batch_norm=True`` (``zoo/recipes/min_cifar10.json``), which has 1,609,508
trainable parameters (gamma and beta instead of each bias) and 1,619,080 in all (the moving
statistics). It is not a same-cost comparison with ``nin_cifar10`` (966,986 parameters, 222.5 M
multiply-adds): the 1×1 convolutions compute five pieces per unit, so MIN costs 1.7× the
parameters and 2.2× the multiply-adds.

Differences from the authors' model: pooling is ``CaffePooling2D`` (ceil rounding gives the
same 16×16 and 8×8 maps as their padding of one row and column at the bottom and right; the
divisor of the edge windows may differ), initialization is Keras's default Glorot uniform
(they used orthonormal kernels), and with batch normalization the convolutions have no bias
(theirs had one, which the normalization cancels).
"""

from __future__ import annotations

from nin_keras.models._common import make_builder
from nin_keras.models.nin import Block, NINSpec, build_nin

#: Pieces of the k×k and the two 1×1 convolutions of every MIN mlpconv.
MIN_PIECES = (1, 5, 5)

MIN_CIFAR_SPEC = NINSpec(
    body=(
        Block((192, 160, 96), 5, "average", pieces=MIN_PIECES),
        Block((192, 192, 192), 5, "average", pieces=MIN_PIECES),
    ),
    classifier_filters=(192, 192),
    classifier_kernel_size=3,
    classifier_pieces=MIN_PIECES,
)

min_cifar10 = make_builder(
    "min_cifar10", build_nin, MIN_CIFAR_SPEC, (32, 32, 3), 10,
    "Maxout Network in Network (MIN) for CIFAR-10, the authors' widths (1,604,722 parameters).",
)
