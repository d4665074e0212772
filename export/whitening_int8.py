"""Int8 and float16 weights for a ``ConvWhitening`` kernel: rounded to keep its response to the data.

A whitening kernel nearly cancels itself: the 7x7x3 taps of each output channel of the compact
CIFAR-10 preset sum to 0.06 against a centre tap of 2.46, so that its response to the images'
low frequencies, which hold most of their energy, is small. Rounding each tap to the nearest of
the 255 per-channel int8 levels (``scale = max|w| / 127``, what the TFLite converter and ONNX
Runtime do) moves that sum by a sizeable fraction of itself, and the whitened images with it:
with every other tensor in float, int8 whitening weights alone leave ``nin_cifar10.caffe_compact``
88.88% top-1 agreement with its float model on the 10,000 CIFAR-10 (JPEG copy) test images
(``python benchmarks/whitening_grid.py``, which measures every figure here).

:func:`int8_grid_kernel` instead picks, per output channel, the integer taps ``q`` that
minimise the output error on real patches, ``(q * scale - w)^T Cov (q * scale - w)`` with
``Cov`` the covariance of the layer's input patches, by coordinate descent from the rounded
taps (one tap moves by one level while that lowers the error), and moves the bias by the mean
error that remains. The largest tap keeps its level 127, so the converter derives the same scale
and re-rounds the new taps to exactly these integers. On the compact preset this raises the
agreement to 97.92%.

Float16 has the same problem on a finer grid: rounded to nearest (what the TFLite float16
converter does), the whitening weights alone move ``caffe_compact``'s class probabilities by up to
0.0477, over the float16 artifacts' parity bound of 0.01. :func:`float16_grid_kernel` runs the same
descent over float16 values (one tap moves to the next float16 value up or down): 0.0021 for the
whitening alone, 0.0036 with every weight in float16 as a float16 TFLite file holds them.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import keras
import numpy as np

from nin_keras.layers import ConvWhitening
from nin_keras.layers.conv_whitening import patches
from nin_keras.zoo.classifier import split_preprocessing

INT8_MAX = 127
_MAX_SWEEPS = 50
GRIDS = ("int8", "float16")


def int8_grid_kernel(kernel: np.ndarray, bias: np.ndarray, inputs: np.ndarray,
                     padding: str) -> tuple[np.ndarray, np.ndarray]:
    """A kernel on the per-output-channel int8 grid that keeps ``conv(inputs)`` close, and its bias.

    Args:
        kernel: float ``(k, k, C, filters)`` convolution kernel.
        bias: float ``(filters,)``.
        inputs: float ``(N, H, W, C)`` images the layer sees (its input, e.g. GCN output).
        padding: the layer's border mode (``ConvWhitening.padding``).

    Returns:
        ``(kernel, bias)`` as float32: every kernel value is an integer multiple of its output
        channel's ``max|kernel| / 127``, the largest one unchanged.
    """
    def channel(taps: np.ndarray, covariance: np.ndarray) -> np.ndarray:
        scale = np.abs(taps).max() / INT8_MAX
        if scale == 0:
            return np.zeros_like(taps)
        # In units of one level, so that the levels stay exact integers.
        levels = _descend(taps / scale, np.round(taps / scale), covariance * scale * scale,
                          lambda level: [n for n in (level - 1.0, level + 1.0) if abs(n) <= INT8_MAX],
                          pinned=int(np.argmax(np.abs(taps))))  # keeps the scale the converter derives
        return levels * scale

    new_kernel, new_bias = _fit_channels(kernel, bias, inputs, padding, channel)
    return new_kernel, new_bias


def float16_grid_kernel(kernel: np.ndarray, bias: np.ndarray, inputs: np.ndarray,
                        padding: str) -> tuple[np.ndarray, np.ndarray]:
    """A kernel of float16 values that keeps ``conv(inputs)`` close, and its bias in float16.

    Same arguments as :func:`int8_grid_kernel`. Returns float32 arrays holding float16 values,
    which a float16 conversion keeps exactly.
    """
    def neighbours(value: float) -> list[float]:
        half = np.float16(value)
        return [float(np.nextafter(half, np.float16(direction))) for direction in (-np.inf, np.inf)]

    def channel(taps: np.ndarray, covariance: np.ndarray) -> np.ndarray:
        return _descend(taps, taps.astype(np.float16).astype(np.float64), covariance, neighbours)

    new_kernel, new_bias = _fit_channels(kernel, bias, inputs, padding, channel)
    return new_kernel, new_bias.astype(np.float16).astype(np.float32)


def _fit_channels(kernel, bias, inputs, padding, channel) -> tuple[np.ndarray, np.ndarray]:
    """``channel(taps, covariance)`` for each output channel, and the bias moved by the mean
    error that remains (a constant over the patches: the bias absorbs it)."""
    rows = patches(np.asarray(inputs, np.float64), kernel.shape[0], padding)
    mean = rows.mean(axis=0)
    covariance = rows.T @ rows / len(rows) - np.outer(mean, mean)
    flat = np.asarray(kernel, np.float64).reshape(-1, kernel.shape[-1])
    new_kernel, new_bias = np.empty_like(flat), np.asarray(bias, np.float64).copy()
    for out in range(flat.shape[1]):
        new_kernel[:, out] = channel(flat[:, out], covariance)
        new_bias[out] -= mean @ (new_kernel[:, out] - flat[:, out])
    return new_kernel.reshape(kernel.shape).astype(np.float32), new_bias.astype(np.float32)


def _descend(taps: np.ndarray, start: np.ndarray, covariance: np.ndarray, neighbours,
             pinned: int | None = None) -> np.ndarray:
    """Grid values near ``taps`` minimising ``(q - taps)^T Cov (q - taps)``, by coordinate descent
    from ``start``: one value moves to a neighbour on the grid (``neighbours(value)``) while that
    lowers the error; the tap ``pinned`` stays."""
    values = np.asarray(start, np.float64).copy()
    error = values - taps
    gradient = covariance @ error  # half the gradient of error^T Cov error
    for _ in range(_MAX_SWEEPS):
        moved = False
        for tap in range(len(taps)):
            if tap == pinned:
                continue
            for candidate in neighbours(values[tap]):
                step = candidate - values[tap]
                # error^T Cov error changes by 2 step gradient[tap] + step^2 Cov[tap, tap].
                if 2 * step * gradient[tap] + step * step * covariance[tap, tap] < 0:
                    values[tap] = candidate
                    error[tap] += step
                    gradient += step * covariance[:, tap]
                    moved = True
                    break
        if not moved:
            break
    return values


@contextlib.contextmanager
def rounded_whitening(model: keras.Model, images: np.ndarray, grid: str = "int8") -> Iterator[list[str]]:
    """Inside the block, every ``ConvWhitening`` in ``model``'s preprocessing holds weights on
    ``grid`` (``"int8"``: :func:`int8_grid_kernel`; ``"float16"``: :func:`float16_grid_kernel`).

    The weights are fitted on ``images`` (the model's input, e.g. calibration images) and the
    original weights come back on exit, so a float artifact exported afterwards is unchanged.

    Args:
        model: an inference model (preprocessing layers, then the network; see
            :func:`nin_keras.zoo.classifier.split_preprocessing`).
        images: float32 ``[N, H, W, C]`` model inputs; a few hundred real images suffice.
        grid: ``"int8"`` or ``"float16"``.

    Yields:
        The names of the layers whose weights were replaced.
    """
    if grid not in GRIDS:
        raise ValueError(f"grid must be one of {GRIDS}, got {grid!r}")
    fit = int8_grid_kernel if grid == "int8" else float16_grid_kernel
    preprocessing, _ = split_preprocessing(model)
    layers = [layer for layer in preprocessing if isinstance(layer, ConvWhitening)]
    saved = [(keras.ops.convert_to_numpy(layer.kernel), keras.ops.convert_to_numpy(layer.bias)) for layer in layers]
    try:
        inputs = np.asarray(images, np.float32)
        for layer in preprocessing:
            if isinstance(layer, ConvWhitening):
                kernel, bias = saved[layers.index(layer)]
                new_kernel, new_bias = fit(kernel, bias, inputs, layer.padding)
                layer.kernel.assign(new_kernel)
                layer.bias.assign(new_bias)
            inputs = keras.ops.convert_to_numpy(layer(inputs))
        yield [layer.name for layer in layers]
    finally:
        for layer, (kernel, bias) in zip(layers, saved):
            layer.kernel.assign(kernel)
            layer.bias.assign(bias)
