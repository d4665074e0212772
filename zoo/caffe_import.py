"""Caffe NIN model → preset: converted weights, the data set's fitted preprocessing, metadata."""

from __future__ import annotations

import os
from pathlib import Path

from nin_keras.caffe import load_caffe_weights, read_caffemodel
from nin_keras.data import dataset_info
from nin_keras.data.arrays import fit_preprocessing, load_arrays
from nin_keras.errors import Argument, OutputExistsError
from nin_keras.io_utils import sha256_file
from nin_keras.layers import ZCAWhitening
from nin_keras.zoo.builder import create_model
from nin_keras.zoo.preset_writer import save_preset
from nin_keras.zoo.registry import get_model_entry


def import_caffe_preset(
    caffemodel: str | os.PathLike,
    arch: str,
    out: str | os.PathLike,
    *,
    fit: bool = True,
    zca_dtype: str = "float16",
    source: str = "auto",
    data_dir: str | os.PathLike | None = None,
    license: str = "",
    origin: str = "",
    overwrite: bool = False,
    command: str | None = None,
) -> Path:
    """Convert a Caffe ``.caffemodel`` into the zoo architecture ``arch`` and write a preset at ``out``.

    Every format and shape check runs before anything is written, and the preset folder is written
    atomically, so a failure leaves nothing behind.

    Args:
        caffemodel: the ``.caffemodel`` file (old V1 ``layers`` or new ``layer`` format).
        arch: zoo architecture name, e.g. ``"nin_cifar10"``.
        out: preset folder to write.
        fit: fit the data set's paper preprocessing (e.g. GCN + ZCA) on its train split; without
            it the preset carries none and inputs must be preprocessed as the Caffe training data was.
        zca_dtype: storage dtype of the ZCA matrix; ``"float16"`` halves the file (a 3072-d
            matrix then stays under 20 MB) and stores no inverse.
        source, data_dir: where the train split is read from (see ``nin_keras.data.load_dataset``).
        license, origin: recorded in ``metadata.json``.
        overwrite: replace an existing ``out``.
        command: the command line that produced the preset, recorded in ``metadata.json``.

    Returns:
        The preset folder.
    """
    if Path(out).exists() and not overwrite:
        raise OutputExistsError(f"{out} already exists (pass ", Argument("overwrite", True), " to replace it)")
    entry = get_model_entry(arch)
    caffe_model = read_caffemodel(caffemodel)
    model = load_caffe_weights(create_model(arch), caffe_model)
    info = dataset_info(entry.dataset)
    preprocessing, note = [], "none fitted: inputs must be preprocessed as the Caffe model's training data was"
    if fit:
        preprocessing = [
            ZCAWhitening.from_config({**layer.get_config(), "matrix_dtype": zca_dtype, "store_inverse": False})
            if isinstance(layer, ZCAWhitening) else layer
            for layer in info.preprocessing_layers()
        ]
        images, _ = load_arrays({"name": info.name, "source": source}, "train", data_dir)
        fit_preprocessing(preprocessing, images)
        note = f"{info.preprocessing} ({info.name} train split, {len(images)} images, source {source!r})"
    metadata = {
        "dataset": info.name,
        "class_names": list(info.class_names),
        "paper_error": entry.paper_error,
        "source": f"Caffe model {os.path.basename(caffemodel)} ({caffe_model.format}, net {caffe_model.name!r})"
                  + (f" from {origin}" if origin else ""),
        "source_sha256": sha256_file(caffemodel),
        "license": license,
        "preprocessing_fitted": note,
        "import_command": command,
    }
    return save_preset(model, out, metadata, preprocessing, overwrite=overwrite)
