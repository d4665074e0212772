"""OpenVINO as a second runtime for the ``.onnx`` artifacts (no conversion step, no other file).

OpenVINO reads an ONNX file directly, including the QDQ int8 graphs of :func:`quantize_onnx
<nin_keras.export.onnx.quantize_onnx>`, and runs their convolutions in int8 with its CPU plugin's
own kernels. On the 2-core Xeon (AVX-512 VNNI, AMX) this project was
benchmarked on, the int8 NIN CIFAR-10 ran more than twice as fast under OpenVINO as under ONNX
Runtime or LiteRT at batch 64 (``benchmarks/README.md``), at comparable accuracy.

Ops that are not quantized (the baked-in GCN and ZCA whitening, the softmax) run in float32:
``precision="f32"`` is the default because OpenVINO's own default on CPUs with bfloat16 support is
to run them in bfloat16, which cost NIN CIFAR-10 0.3 (float model) and 0.45 (int8 model) points of
accuracy on 2,000 CIFAR-10 (JPEG copy) test images in a one-off check.
"""

from __future__ import annotations

import os

import numpy as np

from nin_keras.export.runtime import INPUT_NAME, OUTPUT_NAME, Runner, batched

#: ``precision`` values: the inference precision of the ops that are not quantized.
PRECISIONS = ("f32", "bf16", "f16")


def load_openvino(path: str | os.PathLike, num_threads: int | None = None, precision: str = "f32",
                  batch_size: int = 64) -> Runner:
    """Compile an ``.onnx`` artifact for OpenVINO's CPU plugin as a NumPy function.

    Args:
        path: the ``.onnx`` file (float or int8).
        num_threads: inference threads; ``None`` lets OpenVINO choose.
        precision: ``"f32"`` (default), ``"bf16"`` or ``"f16"`` for the ops that are not quantized.
        batch_size: larger inputs are run in chunks of this size.

    Returns:
        ``run(images float32 [N, H, W, C]) -> probabilities float32 [N, classes]``; the batch
        dimension stays dynamic, as in the artifact.

    Raises:
        ValueError: unknown ``precision``, or ``num_threads`` below 1.
    """
    import openvino as ov

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
    if num_threads is not None:
        if num_threads < 1:
            raise ValueError(f"num_threads must be at least 1, got {num_threads}")
        config["INFERENCE_NUM_THREADS"] = str(num_threads)
    compiled = ov.Core().compile_model(os.fspath(path), "CPU", config)
    request = compiled.create_infer_request()
    output = compiled.output(OUTPUT_NAME)

    def run_chunk(images: np.ndarray) -> np.ndarray:
        # The request owns its output buffer and reuses it on the next call: copy it out.
        return request.infer({INPUT_NAME: np.asarray(images, np.float32)})[output].copy()

    def run(images: np.ndarray) -> np.ndarray:
        return batched(run_chunk, images, batch_size)

    return run
