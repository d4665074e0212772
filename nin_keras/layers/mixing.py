"""MixUp and CutMix on a batch of images and their soft targets, timm's ``Mixup`` in ``keras.ops``."""

from __future__ import annotations

import keras
from keras import ops

from nin_keras.arguments import check_number
from nin_keras.layers._args import check_rank


@keras.saving.register_keras_serializable(package="nin_keras")
class MixUpCutMix(keras.layers.Layer):
    """Mix each batch with itself reversed, by MixUp or CutMix, and mix the targets alike.

    timm's ``Mixup`` in its default ``"batch"`` mode: with probability ``prob`` a batch is mixed,
    by CutMix with probability ``switch_prob`` when both alphas are positive (else by the one that
    is). One ``lam`` is drawn per batch from ``Beta(alpha, alpha)``; image ``i`` is mixed with
    image ``batch - 1 - i``:

    - MixUp (Zhang et al. 2018): ``lam * x_i + (1 - lam) * x_{b-1-i}``;
    - CutMix (Yun et al. 2019): a box of ``floor(H * sqrt(1 - lam))`` by
      ``floor(W * sqrt(1 - lam))`` pixels centred on a uniformly drawn pixel, clipped to the image,
      is pasted from image ``b-1-i``; ``lam`` is then corrected to the part of the image left
      unchanged, ``1 - box area / (H * W)``.

    The targets (one-hot or already soft, e.g. label-smoothed: smoothing and mixing commute) become
    ``lam * t_i + (1 - lam) * t_{b-1-i}``, so the loss must take soft targets (categorical
    crossentropy); accuracy stays measured on the original labels. At inference
    (``training=False``) the layer is the identity.

    Args:
        mixup_alpha: Beta parameter of MixUp's ``lam`` (>= 0; 0 turns MixUp off).
        cutmix_alpha: Beta parameter of CutMix's ``lam`` (>= 0; 0 turns CutMix off).
        prob: Probability that a batch is mixed at all, in [0, 1].
        switch_prob: Probability of CutMix rather than MixUp when both alphas are positive.
        seed: Integer seed for reproducible draws.
        **kwargs: Base ``keras.layers.Layer`` arguments.

    Input shape:
        ``[images (batch, height, width, channels), targets (batch, classes)]``, known height
        and width.

    Output shape:
        The same two tensors, mixed.

    Example:
        >>> mix = MixUpCutMix(mixup_alpha=0.8, cutmix_alpha=1.0, seed=1)
        >>> images, targets = mix([images, keras.ops.one_hot(labels, 10)], training=True)
    """

    def __init__(self, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0, prob: float = 1.0,
                 switch_prob: float = 0.5, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.mixup_alpha = check_number(mixup_alpha, "mixup_alpha", minimum=0)
        self.cutmix_alpha = check_number(cutmix_alpha, "cutmix_alpha", minimum=0)
        self.prob = check_number(prob, "prob", 0, 1)
        self.switch_prob = check_number(switch_prob, "switch_prob", 0, 1)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        images_shape = input_shape[0]
        check_rank(images_shape, 4, self.name)
        if None in tuple(images_shape[1:3]):
            raise ValueError(f"{self.name} needs known height and width, got images of shape {tuple(images_shape)}.")

    def get_random_transformation(self, images, training=True) -> dict | None:
        """Draw this batch's mixing: ``{"lam": () float32, "cutmix": () bool, "center": (2,)
        int32 row and column of the box centre}``; ``lam`` is 1 for a batch left unmixed, and is
        CutMix's drawn value, before the correction to the box (``mix`` does it). ``None`` when not
        ``training`` or when nothing can mix."""
        if not training or not self.prob or not (self.mixup_alpha or self.cutmix_alpha):
            return None
        generator = self.seed_generator
        mixed = keras.random.uniform((), seed=generator) < self.prob
        if self.mixup_alpha and self.cutmix_alpha:
            cutmix = keras.random.uniform((), seed=generator) < self.switch_prob
        else:
            cutmix = ops.convert_to_tensor(bool(self.cutmix_alpha))
        lam = ops.ones((), "float32")
        if self.mixup_alpha:
            lam = keras.random.beta((), self.mixup_alpha, self.mixup_alpha, seed=generator)
        if self.cutmix_alpha:
            lam = ops.where(cutmix, keras.random.beta((), self.cutmix_alpha, self.cutmix_alpha, seed=generator), lam)
        center = ops.stack([keras.random.randint((), 0, images.shape[1], seed=generator),
                            keras.random.randint((), 0, images.shape[2], seed=generator)])
        return {"lam": ops.where(mixed, ops.cast(lam, "float32"), 1.0), "cutmix": ops.logical_and(mixed, cutmix),
                "center": ops.cast(center, "int32")}

    def mix(self, images, targets, transformation):
        """Apply a drawn ``transformation`` (see ``get_random_transformation``) to ``images`` and
        ``targets``; returns both (unchanged for ``None``)."""
        if transformation is None:
            return images, targets
        height, width = images.shape[1], images.shape[2]
        lam, cutmix, center = transformation["lam"], transformation["cutmix"], transformation["center"]
        # timm's rand_bbox: half the cut on either side of the centre, clipped to the image.
        cut = ops.sqrt(1.0 - lam)
        half_h = ops.cast(ops.floor(height * cut), "int32") // 2
        half_w = ops.cast(ops.floor(width * cut), "int32") // 2
        y0, y1 = ops.clip(center[0] - half_h, 0, height), ops.clip(center[0] + half_h, 0, height)
        x0, x1 = ops.clip(center[1] - half_w, 0, width), ops.clip(center[1] + half_w, 0, width)
        rows, columns = ops.arange(height), ops.arange(width)
        inside = (((rows >= y0) & (rows < y1))[:, None] & ((columns >= x0) & (columns < x1))[None, :])
        box_lam = 1.0 - ops.cast((y1 - y0) * (x1 - x0), "float32") / (height * width)
        lam = ops.where(cutmix, box_lam, lam)
        partner = ops.flip(images, axis=0)
        weight = ops.cast(lam, images.dtype)
        blended = weight * images + (1 - weight) * partner
        boxed = ops.where(inside[None, :, :, None], partner, images)
        images = ops.where(cutmix, boxed, blended)
        weight = ops.cast(lam, targets.dtype)
        targets = weight * targets + (1 - weight) * ops.flip(targets, axis=0)
        return images, targets

    def call(self, inputs, training=True):
        images, targets = inputs
        return self.mix(images, targets, self.get_random_transformation(images, training))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0]), tuple(input_shape[1])

    def get_config(self):
        config = super().get_config()
        config.update(mixup_alpha=self.mixup_alpha, cutmix_alpha=self.cutmix_alpha, prob=self.prob,
                      switch_prob=self.switch_prob, seed=self.seed)
        return config
