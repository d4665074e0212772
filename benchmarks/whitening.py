"""Convolutional whitening vs the dense ZCA: accuracy of the Caffe NIN on the whole test split.

The authors' NIN CIFAR-10 network (preset ``nin_cifar10.caffe``) expects GCN + a dense
3072x3072 ZCA. This benchmark distils ``ConvWhitening`` layers from that ZCA on GCN'd training
images of the CIFAR-10 (JPEG copy) and measures, on all 10,000 test images:

- top-1 accuracy of the network fed by each compact whitening, next to the dense ZCA;
- top-1 agreement with the dense-ZCA predictions;
- the relative error of the whitened images, ``||conv(x) - zca(x)||^2 / ||zca(x)||^2``;
- how long the fit took and how many numbers the whitening holds.

Three sweeps around a base setting (7x7, symmetric padding, 3,000 fitting images): kernel
size, padding mode and fitting-set size, plus the patch ZCA fitted from the data alone (no
teacher), which a network trained from scratch on it could use but the Caffe network cannot.

Usage:
    python benchmarks/whitening.py                  # writes results/whitening.json
    python benchmarks/whitening.py --quick          # 500 test images, two settings (smoke run)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

BASE = {"kernel_size": 7, "padding": "symmetric", "fit_images": 3000}
KERNEL_SIZES = (3, 5, 7, 9, 11)
PADDINGS = ("zeros", "reflect", "symmetric")
FIT_SIZES = (1000, 3000, 10000, 50000)


def settings(quick: bool) -> list[dict]:
    """The sweep: the base setting once, then each axis varied alone."""
    if quick:
        return [dict(BASE, fit_images=300), dict(BASE, kernel_size=3, fit_images=300)]
    rows = [dict(BASE)]
    rows += [dict(BASE, kernel_size=k) for k in KERNEL_SIZES if k != BASE["kernel_size"]]
    rows += [dict(BASE, padding=p) for p in PADDINGS if p != BASE["padding"]]
    rows += [dict(BASE, fit_images=n) for n in FIT_SIZES if n != BASE["fit_images"]]
    rows += [dict(BASE, teacher=False)]
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 test images, two settings")
    parser.add_argument("--data-dir", help="local data folder (default: $NIN_KERAS_DATA_DIR or ../shared/datasets)")
    args = parser.parse_args(argv)

    from nin_keras import zoo
    from nin_keras.data.arrays import load_arrays
    from nin_keras.layers import ConvWhitening

    preset = zoo.ImageClassifier.from_preset("nin_cifar10.caffe")
    gcn, zca = preset.preprocessing
    x_train, _ = load_arrays({"name": "cifar10"}, "train", args.data_dir)
    x_test, y_test = load_arrays({"name": "cifar10"}, "test", args.data_dir)
    if args.quick:
        x_test, y_test = x_test[:500], y_test[:500]

    def standardized(images):
        return np.concatenate([np.asarray(gcn(images[i:i + 1000].astype("float32"))) for i in range(0, len(images), 1000)])

    def predictions(whitened):
        return np.argmax(preset.backbone.predict(whitened, batch_size=500, verbose=0), axis=-1)

    train_gcn, test_gcn = standardized(x_train), standardized(x_test)
    dense = np.concatenate([np.asarray(zca(test_gcn[i:i + 1000])) for i in range(0, len(test_gcn), 1000)])
    dense_top1 = predictions(dense)
    rows = [{"whitening": "dense ZCA (3072x3072)", "numbers": int(np.prod(zca.whitening.shape) + zca.mean.shape[0]),
             "accuracy": round(100 * float(np.mean(dense_top1 == y_test)), 2), "agreement": 100.0,
             "relative_error": 0.0}]
    for setting in settings(args.quick):
        teacher = zca if setting.get("teacher", True) else None
        layer = ConvWhitening(kernel_size=setting["kernel_size"], padding=setting["padding"])
        start = time.perf_counter()
        layer.adapt(train_gcn, teacher=teacher, max_examples=setting["fit_images"], seed=0)
        fit_seconds = time.perf_counter() - start
        compact = np.concatenate([np.asarray(layer(test_gcn[i:i + 1000])) for i in range(0, len(test_gcn), 1000)])
        top1 = predictions(compact)
        rows.append({
            "whitening": f"conv {setting['kernel_size']}x{setting['kernel_size']} {setting['padding']}"
                         + ("" if teacher is not None else " (patch ZCA, no teacher)"),
            "fit_images": setting["fit_images"],
            "numbers": int(np.prod(layer.kernel.shape) + layer.bias.shape[0]),
            "accuracy": round(100 * float(np.mean(top1 == y_test)), 2),
            "agreement": round(100 * float(np.mean(top1 == dense_top1)), 2),
            "relative_error": round(float(np.sum((compact - dense) ** 2) / np.sum(dense ** 2)), 4),
            "fit_seconds": round(fit_seconds, 1),
        })
        print(rows[-1], flush=True)
    if args.quick:
        print("quick run: nothing written")
        return 0
    common.finish(
        "whitening", rows, common.command_line(__file__, argv),
        title="Convolutional whitening distilled from the dense ZCA (Caffe NIN, CIFAR-10 JPEG copy)",
        columns=["whitening", "fit_images", "numbers", "accuracy", "agreement", "relative_error", "fit_seconds"],
        notes=[f"Accuracy and agreement (top-1 equal to the dense-ZCA pipeline's) in percent on all {len(y_test):,} "
               "test images of the CIFAR-10 (JPEG copy), network: the authors' Caffe weights (nin_cifar10.caffe).",
               "relative_error: squared error of the whitened test images against the dense ZCA's, over its squared norm.",
               "Fitting images are a seeded (seed 0) random subset of the 50,000 GCN'd training images."],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
