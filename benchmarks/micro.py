"""Integer-only models on TensorFlow Lite for Microcontrollers: accuracy, flash and arena.

For each preset it exports the integer-only TFLite artifact (``quantize="int8",
integer_io=True``: uint8 pixels in, uint8 out, int8 kernels, no float tensor), runs the whole
test split through TFLM's own interpreter (the ``tflite-micro`` package, one image at a time as
on a microcontroller) and through the float Keras model, and records both accuracies, the
flatbuffer size (flash), the smallest tensor arena TFLM allocates it in (RAM) and the
microcontroller classes it fits.

Usage:
    python benchmarks/micro.py                    # nin_mnist, nin_fashion_mnist, nin_cifar10.caffe_compact -> results/micro.json
    python benchmarks/micro.py --presets nin_fashion_mnist   # that row only; the others are kept
    python benchmarks/micro.py --quick            # 200 test images of nin_mnist, nothing written
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

PRESETS = ("nin_mnist", "nin_fashion_mnist", "nin_cifar10.caffe_compact", "nin_cifar10.modern_compact")


def carried_rows(previous: Path, rerun: set[str]) -> list[dict]:
    """Rows of the presets this run did not measure, kept from ``previous`` (a TFLM pass over a
    10,000-image test set takes ~11 minutes, so presets are often rerun one at a time)."""
    if not previous.is_file():
        return []
    old = json.loads(previous.read_text())
    return [{**row, "cpu": row.get("cpu", old["machine"]["cpu"]), "date": row.get("date", old["date"][:10])}
            for row in old["rows"] if row["preset"] not in rerun]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 test images of nin_mnist")
    parser.add_argument("--presets", nargs="+", default=PRESETS)
    parser.add_argument("--data-dir", help="local data folder")
    args = parser.parse_args(argv)

    from nin_keras import zoo
    from nin_keras.data.arrays import load_arrays
    from nin_keras.export import export
    from nin_keras.export.metadata import metadata_path
    from nin_keras.export.micro import load_micro
    from nin_keras.evaluation import predict_probabilities

    rows = []
    for name in (PRESETS[:1] if args.quick else args.presets):
        preset = zoo.ImageClassifier.from_preset(name)
        dataset = preset.metadata["dataset"]
        x_test, y_test = load_arrays({"name": dataset}, "test", args.data_dir)
        if args.quick:
            x_test, y_test = x_test[:200], y_test[:200]
        with tempfile.TemporaryDirectory() as out:
            path = export(name, ("tflite",), out, quantize="int8", integer_io=True)["tflite"]
            info = json.loads(metadata_path(path).read_text())
            start = time.perf_counter()
            micro = load_micro(path)(x_test.astype(np.float32))
            seconds = time.perf_counter() - start
        keras_top1 = np.argmax(predict_probabilities(preset, x_test), axis=-1)
        micro_top1 = np.argmax(micro, axis=-1)
        rows.append({
            "preset": name, "test_images": int(len(y_test)),
            "float_accuracy": round(100 * float(np.mean(keras_top1 == y_test)), 2),
            "micro_accuracy": round(100 * float(np.mean(micro_top1 == y_test)), 2),
            "top1_agreement": round(100 * float(np.mean(micro_top1 == keras_top1)), 2),
            "flash_kib": round(info["micro"]["flash_bytes"] / 1024, 1),
            "arena_kib": round(info["micro"]["arena_bytes"] / 1024, 1),
            "fits": [k for k, ok in info["micro"]["fits"].items() if ok],
            "ms_per_image_tflm_on_host": round(1000 * seconds / len(y_test), 2),
            "cpu": common.machine_info()["cpu"], "date": time.strftime("%Y-%m-%d", time.gmtime()),
        })
        print(rows[-1], flush=True)
    if args.quick:
        print("quick run: nothing written")
        return 0
    rows = carried_rows(common.results_dir() / "micro.json", {row["preset"] for row in rows}) + rows
    common.finish(
        "micro", rows, common.command_line(__file__, argv),
        title="Integer-only models on TensorFlow Lite for Microcontrollers (tflite-micro's Python interpreter)",
        columns=["preset", "test_images", "float_accuracy", "micro_accuracy", "top1_agreement", "flash_kib",
                 "arena_kib", "fits", "ms_per_image_tflm_on_host", "cpu", "date"],
        notes=["Accuracies in percent on the whole test split; float: the Keras preset, micro: the integer-only "
               "artifact (uint8 pixels in and out, int8 kernels, no float tensor) in TFLM's reference kernels.",
               "flash: the flatbuffer; arena: the smallest tensor arena TFLM's allocator accepts (bisection to 1 KiB).",
               "ms_per_image is TFLM's reference kernels on the row's host CPU, not a microcontroller timing; "
               "rows of presets not named by --presets are kept from the previous results, with their CPU and date."],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
