"""Accuracy of a preset's int8 artifacts on the whole test split, against its float Keras model.

For a preset with its preprocessing inside (raw pixels in: the compact CIFAR-10 presets' GCN +
7x7 ``ConvWhitening``, the standardized one's per-channel ``Normalization``) it exports the four
int8 raw-pixel artifacts ``nin-keras export`` writes and runs every test image through each:

- ONNX int8 QDQ, the preprocessing float (``--formats onnx --quantize int8``), ONNX Runtime;
- TFLite int8, the preprocessing float (``--formats tflite --quantize int8``), LiteRT;
- TFLite integer-only, uint8 in and out (``--integer-io``), LiteRT;
- ONNX int8 with the preprocessing quantized too (``--formats onnx --integer-io``), ONNX Runtime.

Each row has the file size, the accuracy and the top-1 agreement with the float Keras model;
the dense-ZCA float model (``--dense``) is measured beside it, since the edge goal is stated
against it. TFLM's figures for the integer-only file are in ``benchmarks/micro.py``.

Usage:
    python benchmarks/int8_accuracy.py             # writes results/int8_accuracy.json
    python benchmarks/int8_accuracy.py --quick     # 500 test images, nothing written
    python benchmarks/int8_accuracy.py --preset nin_cifar10.modern_compact --dense nin_cifar10.modern \
        --result int8_accuracy_modern              # the trained weights, beside the Caffe ones
    python benchmarks/int8_accuracy.py --preset nin_cifar10.standardized --dense '' \
        --result int8_accuracy_standardized        # the default weights: no whitening at all
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

#: (row label, export format, export options, runtime); {preprocessing} names the preset's
#: preprocessing layers as SHORT_NAMES has them.
ARTIFACTS = (
    ("ONNX int8 QDQ, {preprocessing} float", "onnx", {}, "onnxruntime"),
    ("TFLite int8, {preprocessing} float", "tflite", {}, "litert"),
    ("TFLite integer-only, uint8 in and out", "tflite", {"integer_io": True}, "litert"),
    ("ONNX int8, {preprocessing} quantized too", "onnx", {"integer_io": True}, "onnxruntime"),
)
SHORT_NAMES = {"GlobalContrastNormalization": "GCN", "ConvWhitening": "whitening", "ZCAWhitening": "whitening",
               "Normalization": "standardization"}


def artifact_label(template: str, preprocessing: Sequence[object]) -> str:
    """A row's label for a preset with these preprocessing layers (the layer class names where
    SHORT_NAMES has none)."""
    names = [SHORT_NAMES.get(type(layer).__name__, type(layer).__name__) for layer in preprocessing]
    return template.format(preprocessing=" and ".join(names) or "no preprocessing")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="nin_cifar10.caffe_compact")
    parser.add_argument("--dense", default="nin_cifar10.caffe", help="float reference preset ('' to skip)")
    parser.add_argument("--quick", action="store_true", help="500 test images, nothing written")
    parser.add_argument("--data-dir", help="local data folder")
    parser.add_argument("--result", default="int8_accuracy", help="results/<RESULT>.json (default: %(default)s)")
    args = parser.parse_args(argv)

    from nin_keras import zoo
    from nin_keras.data.arrays import load_arrays
    from nin_keras.export import export
    from nin_keras.export.runtime import load_onnx, load_tflite
    from nin_keras.evaluation import predict_probabilities

    preset = zoo.ImageClassifier.from_preset(args.preset)
    x_test, y_test = load_arrays({"name": preset.metadata["dataset"]}, "test", args.data_dir)
    if args.quick:
        x_test, y_test = x_test[:500], y_test[:500]
    images = x_test.astype(np.float32)
    percent = lambda hits: round(100 * float(np.mean(hits)), 2)  # noqa: E731

    float_top1 = np.argmax(predict_probabilities(preset, x_test), axis=-1)
    rows = [{"artifact": f"{args.preset} float Keras model", "size_mb": None,
             "accuracy": percent(float_top1 == y_test), "agreement": 100.0}]
    if args.dense:
        dense_top1 = np.argmax(predict_probabilities(zoo.ImageClassifier.from_preset(args.dense), x_test), axis=-1)
        rows.append({"artifact": f"{args.dense} float Keras model (dense ZCA)", "size_mb": None,
                     "accuracy": percent(dense_top1 == y_test), "agreement": percent(dense_top1 == float_top1)})
    loaders = {"onnxruntime": load_onnx, "litert": load_tflite}
    with tempfile.TemporaryDirectory(prefix="nin_keras_int8_") as out:
        for template, fmt, options, runtime in ARTIFACTS:
            label = artifact_label(template, preset.preprocessing)
            path = export(args.preset, (fmt,), Path(out) / label.split(",")[0].replace(" ", "_"),
                          quantize="int8", **options)[fmt]
            top1 = np.argmax(loaders[runtime](path)(images), axis=-1)
            rows.append({"artifact": f"{label} ({runtime})", "size_mb": round(path.stat().st_size / 1e6, 3),
                         "accuracy": percent(top1 == y_test), "agreement": percent(top1 == float_top1)})
            print(rows[-1], flush=True)
    if args.quick:
        print("quick run: nothing written")
        return 0
    common.finish(
        args.result, rows, common.command_line(__file__, argv),
        title=f"int8 raw-pixel artifacts of {args.preset} on the whole test split",
        columns=["artifact", "size_mb", "accuracy", "agreement"], preset=args.preset,
        notes=[f"accuracy in percent on all {len(y_test):,} test images ({preset.metadata['dataset']}; "
               "for CIFAR-10 the JPEG copy); agreement: top-1 equal to the float Keras model of the first row.",
               "int8 calibration: 200 training images (the export default); size: the artifact file."],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
