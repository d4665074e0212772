"""``load_dataset``: one call for every data set, from local files or tensorflow-datasets."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from nin_keras.data.catalog import DatasetInfo, dataset_info
from nin_keras.data.cifar import read_cifar_binary, read_cifar_python
from nin_keras.data.idx import read_idx_split
from nin_keras.data.image_folder import read_image_folder
from nin_keras.data.locate import not_found, search_dirs
from nin_keras.data.npz import read_npz_split
from nin_keras.data.svhn import SVHN_FILES, VALID_PER_CLASS, read_svhn_mat, validation_mask
from nin_keras.errors import Argument, DataError
from nin_keras.tensorflow_only import import_tensorflow
from nin_keras.tf_startup import quiet_output

Arrays = tuple[np.ndarray, np.ndarray]
Reader = Callable[[Path, DatasetInfo, str], Arrays]

SOURCES = ("auto", "tfds", "local")


def _python(path, info, split):
    return read_cifar_python(path, info.name, split)


def _binary(path, info, split):
    return read_cifar_binary(path, info.name, split)


def _npz(path, info, split):
    return read_npz_split(path, split)


def _idx(path, info, split):
    return read_idx_split(path, split)


def _images(path, info, split):
    return read_image_folder(path, split, info.class_names)


# Local files per data set, tried in this order in each data folder: (name, reader).
LOCAL_FILES: dict[str, list[tuple[str, Reader]]] = {
    "cifar10": [("cifar-10-batches-py", _python), ("cifar-10-python.tar.gz", _python),
                ("cifar-10-batches-bin", _binary), ("cifar-10-binary.tar.gz", _binary),
                ("cifar10.npz", _npz), ("cifar10-jpeg.tar.gz", _images), ("cifar10-jpeg", _images)],
    "cifar100": [("cifar-100-python", _python), ("cifar-100-python.tar.gz", _python),
                 ("cifar-100-binary", _binary), ("cifar-100-binary.tar.gz", _binary),
                 ("cifar100.npz", _npz), ("cifar100-jpeg.tar.gz", _images),
                 ("cifar100-jpeg", _images)],
    "mnist": [("mnist.npz", _npz), ("mnist", _idx)],
    "fashion_mnist": [("fashion-mnist.npz", _npz), ("fashion_mnist.npz", _npz),
                      ("fashion-mnist", _idx), ("fashion_mnist", _idx)],
}
_SVHN_FOLDERS = (".", "svhn")


def load_dataset(name: str, split: str, source: str = "auto",
                 data_dir: str | os.PathLike | None = None) -> tf.data.Dataset:
    """A data set split as a ``tf.data.Dataset`` of ``(uint8 image (H, W, C), int64 label)``.

    Args:
        name: ``cifar10``, ``cifar100``, ``svhn``, ``mnist`` or ``fashion_mnist``.
        split: ``train`` or ``test``; for ``svhn`` also ``valid`` and ``extra``. SVHN follows the
            Maxout/NIN protocol: ``valid`` is 400 images per class from ``train_32x32.mat`` plus
            200 per class from ``extra_32x32.mat`` (the first ones of each class in file order);
            ``train`` and ``extra`` are those files without them, so the paper's training set is
            ``train`` + ``extra`` (598,388 images) and no image is in two splits.
        source: ``"local"`` reads the publishers' files from a data folder (see
            ``nin_keras.data.locate.data_dirs``); ``"tfds"`` uses tensorflow-datasets (which may
            download); ``"auto"`` uses a local copy when there is one, else tensorflow-datasets'
            prepared copy, and never downloads (an offline machine gets the message saying
            where to put the files, not a failed download).
        data_dir: Folder to read (only this one) instead of the default search path; for tfds,
            its data folder.

    Returns:
        An unbatched dataset in the files' order (class-folder sets: by class, then file name).

    Raises:
        ValueError: Unknown ``name``, ``split`` or ``source``.
        DataError: Nothing found locally with ``source="local"`` (the message says where it
            looked and how to get the data), or a file that cannot be read.
    """
    arrays = _local_split(name, split, source, data_dir)
    if arrays is not None:
        return _to_dataset(arrays)
    return _tfds_split(name, split, source, data_dir)


def load_split(name: str, split: str, source: str = "auto",
               data_dir: str | os.PathLike | None = None) -> Arrays:
    """``load_dataset``'s split as NumPy arrays ``(uint8 images, labels)``, in the same order.

    Local copies are read without TensorFlow (what training on JAX uses); only ``source="tfds"``,
    or ``"auto"`` without a local copy, needs it.

    Raises:
        ValueError, DataError: as ``load_dataset``.
    """
    arrays = _local_split(name, split, source, data_dir)
    if arrays is not None:
        return arrays
    images, labels = [], []
    for x, y in _tfds_split(name, split, source, data_dir).batch(4096).as_numpy_iterator():
        images.append(x)
        labels.append(y)
    return np.concatenate(images), np.concatenate(labels)


def _local_split(name: str, split: str, source: str, data_dir) -> Arrays | None:
    """The split from a local copy; None when ``source`` allows tfds and there is no local copy."""
    info = dataset_info(name)
    if split not in info.splits:
        raise ValueError(f"split must be one of {list(info.splits)} for {name}, got {split!r}")
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    arrays = _load_local(info, split, data_dir) if source != "tfds" else None
    if arrays is None and source == "local":
        raise not_found(name, search_dirs(name, data_dir), _local_names(name))
    return arrays


def _tfds_split(name: str, split: str, source: str, data_dir):
    info = dataset_info(name)
    try:
        return _load_tfds(info, split, data_dir, download=source == "tfds")
    except Exception as error:  # tfds reports offline/download/prepare failures in many types
        if source == "tfds":
            raise DataError(f"tensorflow-datasets could not load {info.tfds_name!r} split "
                            f"{split!r}: {type(error).__name__}: {error}") from error
        raise not_found(name, search_dirs(name, data_dir), _local_names(name), (
            f"it has no prepared copy either, so {name!r} is not available offline (", Argument("source", "auto"),
            " never downloads; ", Argument("source", "tfds"), f" does): {_first_sentence(error)}")) from error


def _first_sentence(error: Exception) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.split('. ')[0].splitlines()[0] if text else ''}"


def _local_names(name: str) -> list[str]:
    if name == "svhn":
        return [file if folder == "." else f"{folder}/{file}" for folder in _SVHN_FOLDERS
                for file in SVHN_FILES.values()]
    return [file for file, _ in LOCAL_FILES[name]]


def _load_local(info: DatasetInfo, split: str, data_dir) -> Arrays | None:
    """The split from the first local copy found, checked against ``info``; None if there is none."""
    for folder in search_dirs(info.name, data_dir):
        if info.name == "svhn":
            arrays = _svhn_local(folder, split)
        else:
            arrays = next((reader(folder / file, info, split) for file, reader in
                           LOCAL_FILES[info.name] if (folder / file).exists()), None)
        if arrays is not None:
            return _checked(arrays, info, split)
    return None


def _svhn_local(folder: Path, split: str) -> Arrays | None:
    for sub in _SVHN_FOLDERS:
        files = {key: folder / sub / file for key, file in SVHN_FILES.items()}
        if all(files[key].is_file() for key in _svhn_needs(split)):
            return svhn_split(lambda key: read_svhn_mat(files[key]), split)
    return None


def _svhn_needs(split: str) -> tuple[str, ...]:
    return ("train", "extra") if split == "valid" else (split,)


def svhn_split(read: Callable[[str], Arrays], split: str) -> Arrays:
    """Build SVHN ``split`` from the raw files ``read("train" | "extra" | "test")`` returns."""
    if split == "test":
        return read("test")
    parts = []
    for key in _svhn_needs(split):
        images, labels = read(key)
        keep = validation_mask(labels, VALID_PER_CLASS[key])
        if split != "valid":
            keep = ~keep
        parts.append((images[keep], labels[keep]))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _checked(arrays: Arrays, info: DatasetInfo, split: str) -> Arrays:
    images, labels = arrays
    if images.shape[1:] != info.image_shape:
        raise DataError(f"{info.name} {split}: images have shape {images.shape[1:]}, expected "
                        f"{info.image_shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= info.num_classes):
        raise DataError(f"{info.name} {split}: labels outside 0..{info.num_classes - 1}")
    return images, labels


def _to_dataset(arrays: Arrays) -> tf.data.Dataset:
    tf = import_tensorflow(__name__)
    images, labels = arrays
    return tf.data.Dataset.from_tensor_slices((images.astype(np.uint8), labels.astype(np.int64)))


def _load_tfds(info: DatasetInfo, split: str, data_dir, download: bool = True) -> tf.data.Dataset:
    """The split through tensorflow-datasets; ``download=False`` reads a prepared copy only
    (nothing is created under its data folder)."""
    tf = import_tensorflow(__name__)
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise DataError("tensorflow-datasets is not installed (pip install tensorflow-datasets)") from error
    data_dir = None if data_dir is None else str(data_dir)

    def load(tfds_split: str, **options):
        # absl's "Variant folder ... has no dataset_info.json", also when the copy is missing:
        # that failure is reported by load_dataset, in words.
        with quiet_output(show_on_failure=False):
            return tfds.load(info.tfds_name, split=tfds_split, as_supervised=True, data_dir=data_dir,
                             download=download, **options)

    def read_arrays(tfds_split: str) -> Arrays:
        return tuple(tfds.as_numpy(load(tfds_split, batch_size=-1)))

    if info.name == "svhn" and split != "test":
        return _to_dataset(_checked(svhn_split(read_arrays, split), info, split))
    dataset = load(split)
    return dataset.map(lambda image, label: (tf.cast(image, tf.uint8), tf.cast(label, tf.int64)))
