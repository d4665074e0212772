"""The batched input pipeline: the same Keras preprocessing layers, mapped over ``tf.data`` batches."""

from __future__ import annotations

from typing import Sequence

import keras
import tensorflow as tf


def make_pipeline(dataset: tf.data.Dataset, batch_size: int,
                  preprocessing: Sequence[keras.layers.Layer] = (),
                  augmentation: Sequence[keras.layers.Layer] = (),
                  shuffle: int | None = None, seed: int | None = None, training: bool = False,
                  drop_remainder: bool = False, cache: bool | str = False,
                  device: str | None = None) -> tf.data.Dataset:
    """Shuffle, batch, preprocess, augment and prefetch ``(image, label)`` examples.

    Order: ``shuffle`` (examples) -> ``batch`` -> one vectorized ``map`` applying the
    ``preprocessing`` layers to whole batches (parallel, order kept) -> when ``training``,
    one ``map`` applying the ``augmentation`` layers (sequential, so that seeded layers give the
    same crops and flips on every run) -> ``prefetch(AUTOTUNE)``, or ``prefetch_to_device`` when a
    ``device`` is named. With ``cache``, preprocessing runs first (batched, then unbatched) and
    its output is cached, so from the second epoch on only shuffling, batching and augmentation
    run: GCN + ZCA are deterministic and their 3072 x 3072 matmul dominates a CIFAR pipeline
    on CPU.

    The layers are the same objects a model uses (e.g. a fitted ``ZCAWhitening``), so the
    pipeline and a saved model cannot disagree; they are built here, eagerly, from the dataset's
    element shape. Layers that still need fitting (``ZCAWhitening``) must be adapted first, or
    they act as the identity.

    Args:
        dataset: Unbatched ``(image, label)`` dataset, e.g. from ``load_dataset``.
        batch_size: Examples per batch.
        preprocessing: Layers applied to every batch (``training=False``).
        augmentation: Layers applied only when ``training`` (with ``training=True``).
        shuffle: Shuffle buffer in examples; ``None`` means 10,000 when ``training``, else none.
        seed: Seed of the shuffle (the augmentation layers carry their own seeds).
        training: Whether to shuffle by default and to augment.
        drop_remainder: Drop a last, smaller batch.
        cache: ``True`` caches the preprocessed examples in memory (CIFAR-10 train: 614 MB in
            float32), a path caches them in files there (``tf.data.Dataset.cache``).
        device: E.g. ``"/gpu:0"``: prefetch batches into that device's memory (must be the last
            transformation, so iterate the result directly).

    Returns:
        A dataset of ``(images (batch, H, W, C) float32, labels int64)`` batches (``uint8``
        images when no layer casts them).

    Example:
        >>> info = dataset_info("cifar10")
        >>> train = load_dataset("cifar10", "train")
        >>> gcn, zca = info.preprocessing_layers()
        >>> zca.adapt(train.batch(1000).map(lambda x, y: gcn(x)))
        >>> batches = make_pipeline(train, 128, [gcn, zca], info.augmentation_layers(seed=0),
        ...                         training=True, seed=0, cache=True)
    """
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    batch_size = int(batch_size)
    if shuffle is None:
        shuffle = 10_000 if training else 0
    if cache:
        dataset = _map(dataset.batch(batch_size), preprocessing, training=False, parallel=True)
        dataset = dataset.unbatch().cache("" if cache is True else str(cache))
        preprocessing = ()
    if shuffle:
        dataset = dataset.shuffle(int(shuffle), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    dataset = _map(dataset, preprocessing, training=False, parallel=True)
    if training:
        dataset = _map(dataset, augmentation, training=True, parallel=False)
    if device is not None:
        return dataset.apply(tf.data.experimental.prefetch_to_device(device))
    return dataset.prefetch(tf.data.AUTOTUNE)


def _map(dataset: tf.data.Dataset, layers: Sequence[keras.layers.Layer], training: bool,
         parallel: bool) -> tf.data.Dataset:
    """Apply ``layers`` to the images of a batched dataset, building them first (eagerly:
    variables cannot be created inside a ``map`` function)."""
    if not layers:
        return dataset
    shape = tuple(dataset.element_spec[0].shape)
    for layer in layers:
        if not layer.built:
            layer.build(shape)
        shape = tuple(layer.compute_output_shape(shape))

    def apply(images, labels):
        for layer in layers:
            images = layer(images, training=training)
        return images, labels

    if parallel:
        return dataset.map(apply, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.map(apply)
