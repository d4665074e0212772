"""What rounding a ``ConvWhitening`` kernel to the int8 or float16 grid costs, and what choosing its
grid values to keep its output (``export/whitening_int8.py``) gives back.

A compact CIFAR-10 preset (GCN + 7x7 ``ConvWhitening`` + NIN) is run in Keras on the whole test
split with its weights held on a grid, every computation in float32, so each row isolates the
weights: the ``ConvWhitening`` kernel alone on the int8 grid (per output channel, ``max|w| / 127``
per level, as the TFLite converter and ONNX Runtime quantize weights) or on float16, rounded to
nearest or chosen as ``nin-keras export`` does (fitted on the 200 calibration images it uses); then
every weight in float16, which is what a float16 TFLite file holds (its kernels dequantize the
weights and compute in float32). Against the float32 preset: accuracy, top-1 agreement, and the
largest and 99th-percentile change of any class probability.

Usage:
    python benchmarks/whitening_grid.py           # writes results/whitening_grid.json
    python benchmarks/whitening_grid.py --quick   # 500 test images, one preset, nothing written
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

PRESETS = ("nin_cifar10.caffe_compact", "nin_cifar10.modern_compact")
#: (which weights go on the grid, the grid, how the whitening kernel gets there)
SETTINGS = (
    ("whitening", "int8", "nearest"),
    ("whitening", "int8", "chosen"),
    ("whitening", "float16", "nearest"),
    ("whitening", "float16", "chosen"),
    ("all", "float16", "nearest"),
    ("all", "float16", "chosen"),
)
CALIBRATION_IMAGES = 200  # nin-keras export's default calibration_samples


def nearest_on_grid(kernel: np.ndarray, bias: np.ndarray, grid: str) -> tuple[np.ndarray, np.ndarray]:
    """``(kernel, bias)`` rounded to nearest as the converters do: int8 per output channel (last
    axis) with ``scale = max|w| / 127`` and a float bias (an int32 one at a far finer scale), or
    both cast to float16."""
    if grid == "float16":
        return kernel.astype(np.float16).astype(np.float32), bias.astype(np.float16).astype(np.float32)
    scale = np.abs(kernel).reshape(-1, kernel.shape[-1]).max(axis=0) / 127
    scale = np.where(scale == 0, 1.0, scale)
    return (np.round(kernel / scale) * scale).astype(np.float32), bias


@contextlib.contextmanager
def weights_on_grid(preset, scope: str, grid: str, rounding: str, calibration: np.ndarray) -> Iterator[None]:
    """Inside the block ``preset`` holds the setting's weights on ``grid``; they come back on exit.
    The whitening kernel goes first, from its float32 values, as in an export; casting all weights
    to float16 after that leaves its float16 values as they are."""
    import keras

    from nin_keras.export.whitening_int8 import rounded_whitening
    from nin_keras.layers import ConvWhitening

    with contextlib.ExitStack() as stack:
        if rounding == "chosen":
            stack.enter_context(rounded_whitening(preset, calibration, grid))
        else:
            whitening = [layer for layer in preset.preprocessing if isinstance(layer, ConvWhitening)]
            stack.enter_context(_restored([variable for layer in whitening for variable in (layer.kernel, layer.bias)]))
            for layer in whitening:
                kernel, bias = nearest_on_grid(keras.ops.convert_to_numpy(layer.kernel),
                                               keras.ops.convert_to_numpy(layer.bias), grid)
                layer.kernel.assign(kernel)
                layer.bias.assign(bias)
        if scope == "all":
            stack.enter_context(_restored(preset.weights))
            for variable in preset.weights:
                variable.assign(keras.ops.convert_to_numpy(variable).astype(np.float16).astype(np.float32))
        yield


@contextlib.contextmanager
def _restored(variables) -> Iterator[None]:
    """Inside the block ``variables`` may change; their values come back on exit."""
    import keras

    saved = [keras.ops.convert_to_numpy(variable) for variable in variables]
    try:
        yield
    finally:
        for variable, value in zip(variables, saved):
            variable.assign(value)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 test images, one preset, nothing written")
    parser.add_argument("--data-dir", help="local data folder (default: $NIN_KERAS_DATA_DIR or ../shared/datasets)")
    args = parser.parse_args(argv)

    from nin_keras import zoo
    from nin_keras.data.arrays import load_arrays
    from nin_keras.evaluation import predict_probabilities
    from nin_keras.export.samples import calibration_images

    x_test, y_test = load_arrays({"name": "cifar10"}, "test", args.data_dir)
    if args.quick:
        x_test, y_test = x_test[:500], y_test[:500]
    calibration = calibration_images("cifar10", CALIBRATION_IMAGES)[0].astype(np.float32)
    percent = lambda hits: round(100 * float(np.mean(hits)), 2)  # noqa: E731
    rows = []
    for name in PRESETS[:1] if args.quick else PRESETS:
        preset = zoo.ImageClassifier.from_preset(name)
        reference = predict_probabilities(preset, x_test)
        rows.append({"preset": name, "weights": "float32", "whitening_kernel": "float32",
                     "accuracy": percent(reference.argmax(-1) == y_test), "agreement": 100.0,
                     "max_change": 0.0, "p99_change": 0.0})
        for scope, grid, rounding in SETTINGS:
            with weights_on_grid(preset, scope, grid, rounding, calibration):
                probabilities = predict_probabilities(preset, x_test)
            change = np.abs(probabilities - reference).max(axis=-1)
            rows.append({
                "preset": name, "weights": f"{'the whitening kernel' if scope == 'whitening' else 'all'} {grid}",
                "whitening_kernel": "rounded to nearest" if rounding == "nearest" else "chosen to keep its output",
                "accuracy": percent(probabilities.argmax(-1) == y_test),
                "agreement": percent(probabilities.argmax(-1) == reference.argmax(-1)),
                "max_change": round(float(change.max()), 4), "p99_change": round(float(np.percentile(change, 99)), 4),
            })
            print(rows[-1], flush=True)
    if args.quick:
        print("quick run: nothing written")
        return 0
    common.finish(
        "whitening_grid", rows, common.command_line(__file__, argv),
        title="ConvWhitening weights on the int8 and float16 grids: rounded to nearest or chosen to keep the output",
        columns=["preset", "weights", "whitening_kernel", "accuracy", "agreement", "max_change", "p99_change"],
        notes=[f"Keras, every computation in float32, on all {len(y_test):,} test images of the CIFAR-10 (JPEG copy): "
               "only the weights named are held on the grid. accuracy and agreement (top-1 equal to the float32 "
               "preset's) in percent; max_change / p99_change: the largest and the 99th percentile over images of "
               "the largest change of a class probability.",
               "int8: per output channel, max|w| / 127 a level, the bias float; 'chosen': "
               f"export/whitening_int8.py's grid values, fitted on the {CALIBRATION_IMAGES} calibration images "
               "nin-keras export uses (training split, seeded). 'all float16' is what a float16 TFLite file holds."],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
