"""The batched input pipeline: the same Keras preprocessing layers, mapped over ``tf.data`` batches."""

from __future__ import annotations

import itertools
from typing import Sequence

import keras
import numpy as np
from nin_keras.tensorflow_only import import_tensorflow

tf = import_tensorflow(__name__)


def make_pipeline(dataset: tf.data.Dataset, batch_size: int,
                  preprocessing: Sequence[keras.layers.Layer] = (),
                  augmentation: Sequence[keras.layers.Layer] = (),
                  shuffle: int | None = None, seed: int | None = None, training: bool = False,
                  drop_remainder: bool = False, cache: bool | str = False,
                  device: str | None = None, jit_compile: bool = True,
                  raw_augmentation: Sequence[keras.layers.Layer] = ()) -> tf.data.Dataset:
    """Shuffle, batch, preprocess, augment and prefetch ``(image, label)`` examples.

    Order: ``shuffle`` (examples) -> ``batch`` -> when ``training``, the ``raw_augmentation``
    layers on the float32 raw pixels -> one vectorized ``map`` applying the
    ``preprocessing`` layers to whole batches (parallel, order kept, XLA-compiled unless
    ``jit_compile=False``) -> when ``training``, the
    ``augmentation`` layers -> ``prefetch(AUTOTUNE)``, or ``prefetch_to_device`` when a
    ``device`` is named.

    Augmentation layers that follow the Keras image-layer protocol (``get_random_transformation``
    and ``transform_images``, e.g. ``RandomPadCrop``, ``keras.layers.RandomFlip``) draw their
    random parameters in one sequential ``map``, so seeded layers give the same crops and flips
    on every run, and transform the images in a parallel, XLA-compiled ``map``; other layers run
    in a sequential ``map``.

    With ``cache=True``, the preprocessed examples are computed once, in batches, into one
    in-memory array (CIFAR-10 train: 614 MB in float32), and every epoch shuffles and batches
    indices into it and gathers each batch: from the second epoch on only that gather and the
    augmentation run (GCN + ZCA are deterministic and their 3072 x 3072 matmul dominates a
    CIFAR pipeline on CPU). With a path, the preprocessed examples are cached in files there
    (``tf.data.Dataset.cache``) and read back one by one each epoch, for data that does not fit
    in memory. Either way the batches are the same as without ``cache``.

    The layers are the same objects a model uses (e.g. a fitted ``ZCAWhitening``), so the
    pipeline and a saved model cannot disagree; they are built here, eagerly, from the dataset's
    element shape. Layers that still need fitting (``ZCAWhitening``) must be adapted first, or
    they act as the identity.

    Args:
        dataset: Unbatched ``(image, label)`` dataset, e.g. from ``load_dataset``.
        batch_size: Examples per batch.
        preprocessing: Layers applied to every batch (``training=False``).
        augmentation: Layers applied only when ``training`` (with ``training=True``), after the
            preprocessing (a zero-filling crop fills with the whitened data's mean).
        raw_augmentation: Layers applied only when ``training``, before the preprocessing, to
            the images as float32 in [0, 255] (``keras.layers.RandAugment``'s default
            ``value_range``), not XLA-compiled; not with ``cache``, which stores preprocessed
            images.
        shuffle: Shuffle buffer in examples; ``None`` means 10,000 when ``training``, else none.
        seed: Seed of the shuffle (the augmentation layers carry their own seeds).
        training: Whether to shuffle by default and to augment.
        drop_remainder: Drop a last, smaller batch.
        cache: ``True`` keeps the preprocessed examples in memory (computed when the pipeline is
            made), a path caches them in files there.
        device: E.g. ``"/gpu:0"``: prefetch batches into that device's memory (must be the last
            transformation, so iterate the result directly).
        jit_compile: Compile the preprocessing and the augmentation transforms with XLA, which
            fuses their elementwise steps around the matmuls and gathers: LCN runs about 3x
            faster on CPU, GCN + ZCA as fast (its matmul dominates). Turn it off for layers XLA
            cannot compile.

    Returns:
        A dataset of ``(images (batch, H, W, C) float32, labels int64)`` batches (``uint8``
        images when no layer casts them).

    Example:
        >>> info = dataset_info("cifar10")
        >>> train = load_dataset("cifar10", "train")
        >>> gcn, zca = info.preprocessing_layers()
        >>> zca.adapt(train.batch(1000).map(lambda x, y: gcn(x)))
        >>> augment = [RandomPadCrop(4, horizontal_flip=True, seed=0)]   # nin_keras.layers
        >>> batches = make_pipeline(train, 128, [gcn, zca], augment,
        ...                         training=True, seed=0, cache=True)
    """
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    batch_size = int(batch_size)
    if shuffle is None:
        shuffle = 10_000 if training else 0
    raw_augmentation = raw_augmentation if training else ()
    if raw_augmentation and cache:
        raise ValueError("raw_augmentation cannot run with cache: the cache holds preprocessed images")
    if cache is True:
        images, labels = _materialize(_preprocess(dataset.batch(batch_size), preprocessing, jit_compile))
        # Shuffling indices orders the examples exactly as shuffling the examples would.
        indices = tf.data.Dataset.range(len(labels))
        if shuffle:
            indices = indices.shuffle(int(shuffle), seed=seed, reshuffle_each_iteration=True)
        dataset = indices.batch(batch_size, drop_remainder=drop_remainder).map(
            lambda i: (tf.gather(images, i), tf.gather(labels, i)))
    else:
        if cache:
            dataset = _preprocess(dataset.batch(batch_size), preprocessing, jit_compile)
            dataset = dataset.unbatch().cache(str(cache))
            preprocessing = ()
        if shuffle:
            dataset = dataset.shuffle(int(shuffle), seed=seed, reshuffle_each_iteration=True)
        dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
        if raw_augmentation:
            # Not compiled: XLA has no kernel for the image warps of Keras's geometric layers
            # (ImageProjectiveTransformV3: RandAugment's rotation, shear and translation).
            dataset = _augment(dataset.map(lambda images, labels: (tf.cast(images, "float32"), labels)),
                               raw_augmentation, jit_compile=False)
        dataset = _preprocess(dataset, preprocessing, jit_compile)
    if training:
        dataset = _augment(dataset, augmentation, jit_compile)
    if device is not None:
        return dataset.apply(tf.data.experimental.prefetch_to_device(device))
    return dataset.prefetch(tf.data.AUTOTUNE)


def _materialize(batches: tf.data.Dataset) -> tuple[tf.Tensor, tf.Tensor]:
    """All ``(images, labels)`` batches of a finite dataset, concatenated into two tensors."""
    images, labels = zip(*batches)
    return tf.concat(images, axis=0), tf.concat(labels, axis=0)


def _build(layers: Sequence[keras.layers.Layer], shape: tuple) -> None:
    """Build ``layers`` eagerly from an input shape (variables cannot be created inside a ``map``
    function)."""
    for layer in layers:
        if not layer.built:
            layer.build(shape)
        shape = tuple(layer.compute_output_shape(shape))


def _preprocess(dataset: tf.data.Dataset, layers: Sequence[keras.layers.Layer],
                jit_compile: bool) -> tf.data.Dataset:
    """Apply deterministic ``layers`` (``training=False``) to the images of a batched dataset,
    batches in parallel, order kept."""
    if not layers:
        return dataset
    _build(layers, tuple(dataset.element_spec[0].shape))

    @tf.function(jit_compile=jit_compile)
    def apply(images):
        for layer in layers:
            images = layer(images, training=False)
        return images

    return dataset.map(lambda images, labels: (apply(images), labels),
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _augment(dataset: tf.data.Dataset, layers: Sequence[keras.layers.Layer],
             jit_compile: bool) -> tf.data.Dataset:
    """Apply augmentation ``layers`` (``training=True``) to a batched dataset, reproducibly.

    A layer's seed generator is state, so draws must happen in order; for consecutive layers
    with ``get_random_transformation``/``transform_images``, only the cheap drawing runs in a
    sequential ``map`` and the pixel work in a parallel one, compiled with XLA when
    ``jit_compile`` (which fuses the index arithmetic into the gather: about twice as fast on
    CPU). Other layers run whole, in a sequential ``map``.
    """
    _build(layers, tuple(dataset.element_spec[0].shape))
    for splits, group in itertools.groupby(layers, key=_splits):
        group = list(group)
        if not splits:
            def apply(images, labels, group=group):
                for layer in group:
                    images = layer(images, training=True)
                return images, labels

            dataset = dataset.map(apply)
            continue

        draw, transform = _draw_and_transform(group, jit_compile)
        dataset = dataset.map(draw).map(
            lambda images, labels, transformations, transform=transform: (
                transform(images, transformations), labels),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset


def _draw_and_transform(group: Sequence[keras.layers.Layer], jit_compile: bool):
    """The two ``map`` functions of consecutive drawing layers: ``draw(images, labels)`` ->
    ``(images, labels, tensors)`` and ``transform(images, tensors)`` -> images."""
    # A dataset element holds no ``None`` (RandAugment's AutoContrast draws nothing), so ``draw``
    # sends the tensors alone and records, when traced, where the ``None``s were.
    layout = {}

    def draw(images, labels):
        # Python numbers in a transformation (e.g. RandomFlip's static shape) become tensors
        # so that it can travel as a dataset element.
        transformations = tuple(layer.get_random_transformation(images, training=True) for layer in group)
        layout["structure"] = tf.nest.map_structure(lambda leaf: leaf is None, transformations)
        leaves = tf.nest.flatten(transformations)
        return images, labels, tuple(tf.convert_to_tensor(leaf) for leaf in leaves if leaf is not None)

    @tf.function(jit_compile=jit_compile)
    def transform(images, tensors):
        tensors = iter(tensors)
        leaves = [None if none else next(tensors) for none in tf.nest.flatten(layout["structure"])]
        for layer, transformation in zip(group, tf.nest.pack_sequence_as(layout["structure"], leaves)):
            images = layer.transform_images(images, transformation, training=True)
        return images

    return draw, transform


def _splits(layer: keras.layers.Layer) -> bool:
    """Whether ``layer`` draws (``get_random_transformation``) apart from transforming."""
    return hasattr(layer, "get_random_transformation") and hasattr(layer, "transform_images")
