"""Compact presets: a preset's dense ZCA replaced by a distilled ``ConvWhitening``.

The network and its weights stay as they are; only the whitening changes, from the
``(H*W*C)^2`` matrix (9.4 million numbers at 32x32x3, 18.9 MB in float16) to a ``k x k``
convolution (444 numbers for 7x7) fitted by least squares to reproduce the dense ZCA on GCN'd
training images (see ``nin_keras.layers.ConvWhitening``). The result is an ordinary preset
folder whose metadata records the fit and the accuracy measured on the data set's test split.

Example:
    >>> make_compact_preset("nin_cifar10.caffe", "zoo/weights/nin_cifar10.caffe_compact")
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from nin_keras.errors import PresetError
from nin_keras.layers import ConvWhitening, ZCAWhitening

#: Chosen with ``python benchmarks/whitening.py`` on the whole CIFAR-10 (JPEG copy) test split.
DEFAULT_KERNEL_SIZE = 7
DEFAULT_PADDING = "symmetric"
DEFAULT_FIT_IMAGES = 3000


def make_compact_preset(
    preset: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    kernel_size: int = DEFAULT_KERNEL_SIZE,
    padding: str = DEFAULT_PADDING,
    fit_images: int = DEFAULT_FIT_IMAGES,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    command: str | None = None,
) -> Path:
    """Write a copy of ``preset`` whose ``ZCAWhitening`` is distilled into a ``ConvWhitening``.

    Args:
        preset: zoo name, folder or URL of a preset with a ``ZCAWhitening`` preprocessing layer.
        out_dir: the new preset folder.
        kernel_size, padding: of the ``ConvWhitening``.
        fit_images: training images the convolution is fitted on (a seeded random subset).
        seed: seeds that subset.
        data_dir: local data folder.
        overwrite: replace an existing ``out_dir``.
        command: the command line to record in the metadata.

    Returns:
        The preset folder written.

    Raises:
        PresetError: the preset has no ``ZCAWhitening`` to distil.
    """
    from nin_keras.data.arrays import load_arrays
    from nin_keras.evaluation import evaluate_model, preset_metrics
    from nin_keras.zoo.classifier import ImageClassifier
    from nin_keras.zoo.preset_loader import read_preset
    from nin_keras.zoo.preset_writer import save_preset

    source = read_preset(preset)
    positions = [i for i, layer in enumerate(source.preprocessing) if isinstance(layer, ZCAWhitening)]
    if not positions:
        names = [type(layer).__name__ for layer in source.preprocessing]
        raise PresetError(f"preset {preset} has no ZCAWhitening to distil (its preprocessing: {names or 'none'})")
    at = positions[0]
    dataset = source.metadata["dataset"]
    x_train, _ = load_arrays({"name": dataset}, "train", data_dir)
    pick = np.sort(np.random.default_rng(seed).choice(len(x_train), min(fit_images, len(x_train)), replace=False))
    fit_input = x_train[pick].astype(np.float32)
    for layer in source.preprocessing[:at]:
        fit_input = np.asarray(layer(fit_input))
    start = time.perf_counter()
    compact = ConvWhitening(kernel_size=kernel_size, padding=padding, name="conv_whitening")
    compact.adapt(fit_input, teacher=source.preprocessing[at])
    fit_seconds = time.perf_counter() - start
    preprocessing = [*source.preprocessing[:at], compact, *source.preprocessing[at + 1:]]

    x_test, y_test = load_arrays({"name": dataset}, "test", data_dir)
    test = evaluate_model(ImageClassifier(source.model, preprocessing), x_test, y_test)
    dense = source.metadata.get("metrics") or {}
    metadata: dict[str, Any] = {
        **{k: v for k, v in source.metadata.items() if k in ("dataset", "class_names", "paper_error", "license")},
        "metrics": preset_metrics(test),
        "evaluated_on": source.metadata.get("evaluated_on", f"{dataset} test split"),
        "command": command,
        "source": f"{source.metadata.get('source', preset)}; whitening distilled into a {kernel_size}x{kernel_size} "
                  f"ConvWhitening by nin_keras.zoo.compact",
        "compact_whitening": {
            "from_preset": str(preset), "kernel_size": kernel_size, "padding": padding,
            "fit_images": int(len(pick)), "seed": seed, "fit_seconds": round(fit_seconds, 1),
            "dense_zca_test_accuracy": dense.get("test_accuracy"),
        },
    }
    return save_preset(source.model, out_dir, metadata, preprocessing,
                       architecture=source.architecture, architecture_kwargs=source.kwargs, overwrite=overwrite)
