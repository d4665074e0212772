"""Running exported artifacts without TensorFlow: the runner contract and the runtimes.

Every artifact loads as a *runner*, ``run(float32 raw pixels [N, H, W, C]) -> float32
probabilities [N, classes]``, whatever its format and quantization (integer-only files are
quantized to and from uint8 inside). This module needs NumPy and the runtime alone (LiteRT for
``.tflite``, ONNX Runtime for ``.onnx``; OpenVINO in ``openvino.py``, TFLM in ``micro.py``), so
``nin_keras.deploy`` runs on a machine without TensorFlow or Keras.
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np

from nin_keras.tf_startup import quiet_output

#: The one input and output name of every artifact (traced from ``serving.ServingModule``).
INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"

#: A loaded artifact (or the Keras model) as a plain function: float32 NHWC batch -> probabilities.
Runner = Callable[[np.ndarray], np.ndarray]


def batched(fn: Callable[[np.ndarray], np.ndarray], images: np.ndarray,
            batch_size: int = 64) -> np.ndarray:
    """Apply ``fn`` to ``images`` in chunks of ``batch_size`` and concatenate the results."""
    if len(images) == 0:
        raise ValueError("images is an empty batch")
    return np.concatenate([np.asarray(fn(images[i:i + batch_size]))
                           for i in range(0, len(images), batch_size)])


def load_tflite(path: str | os.PathLike, num_threads: int | None = None,
                batch_size: int = 64) -> Runner:
    """Load a ``.tflite`` file in the LiteRT interpreter as a NumPy function.

    Args:
        path: the ``.tflite`` file.
        num_threads: CPU threads for the interpreter (and its XNNPACK delegate); ``None`` lets
            LiteRT choose.
        batch_size: larger inputs are run in chunks of this size; the input tensor is resized to
            each chunk's batch (the artifact's batch dimension is dynamic).

    Returns:
        ``run(images float32 [N, H, W, C]) -> probabilities float32 [N, classes]`` (quantized to
        and from uint8 for integer-only artifacts).
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
    # Integer-only artifacts take and give uint8: the runner quantizes the raw pixels and
    # dequantizes the probabilities, so every artifact keeps the same float contract.
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    input_index, output_index = source["index"], target["index"]
    current = [None]

    def run_chunk(images: np.ndarray) -> np.ndarray:
        nonlocal interpreter
        if current[0] != images.shape:
            with quiet_output():  # XNNPACK's "Created ... delegate for CPU" line, its refusals
                interpreter = _allocated(interpreter, input_index, images.shape, path, num_threads)
            current[0] = images.shape
        interpreter.set_tensor(input_index, quantize(images, source))
        interpreter.invoke()
        return dequantize(interpreter.get_tensor(output_index), target)

    def run(images: np.ndarray) -> np.ndarray:
        return batched(run_chunk, images, batch_size)

    return run


def _allocated(interpreter, input_index: int, shape: tuple, path, num_threads: int | None):
    """``interpreter`` with its input resized to ``shape`` and tensors allocated; a new one on
    the reference kernels where XNNPACK refuses the graph."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter.resize_tensor_input(input_index, list(shape))
    try:
        interpreter.allocate_tensors()
        return interpreter
    except RuntimeError as err:
        if "XNNPACK" not in str(err):
            raise
    # XNNPACK rejects some int8 subgraphs (quantization scales outside its limits); the
    # reference built-in kernels run them, more slowly.
    interpreter = Interpreter(model_path=str(path), num_threads=num_threads,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.resize_tensor_input(input_index, list(shape))
    interpreter.allocate_tensors()
    return interpreter


def load_onnx(path: str | os.PathLike, num_threads: int | None = None,
              graph_optimization: str = "all", batch_size: int = 64) -> Runner:
    """Load an ``.onnx`` file in an ONNX Runtime CPU session as a NumPy function.

    Args:
        path: the ``.onnx`` file.
        num_threads: intra-op threads; ``None`` lets ONNX Runtime choose.
        graph_optimization: ``"disable"``, ``"basic"``, ``"extended"`` or ``"all"``.
        batch_size: larger inputs are run in chunks of this size.

    Returns:
        ``run(images float32 [N, H, W, C]) -> probabilities float32 [N, classes]``.
    """
    import onnxruntime as ort

    levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    if graph_optimization not in levels:
        raise ValueError(f"graph_optimization must be one of {sorted(levels)}, "
                         f"got {graph_optimization!r}")
    options = ort.SessionOptions()
    options.graph_optimization_level = levels[graph_optimization]
    if num_threads is not None:
        options.intra_op_num_threads = num_threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run_chunk(images: np.ndarray) -> np.ndarray:
        return session.run([OUTPUT_NAME], {INPUT_NAME: np.asarray(images, np.float32)})[0]

    def run(images: np.ndarray) -> np.ndarray:
        return batched(run_chunk, images, batch_size)

    return run


def _scale_and_zero_point(details: dict) -> tuple[float, int]:
    params = details.get("quantization_parameters") or {}
    scales, zero_points = params.get("scales"), params.get("zero_points")
    if scales is not None and len(scales):
        return float(scales[0]), int(zero_points[0])
    scale, zero_point = details.get("quantization", (0.0, 0))
    return float(scale), int(zero_point)


def quantize(values: np.ndarray, details: dict) -> np.ndarray:
    """Float values -> the integer tensor ``details`` describes (``round(x / scale) + zero_point``,
    clipped to the dtype); float tensors are passed through as float32."""
    dtype = np.dtype(details["dtype"])
    if dtype.kind == "f":
        return np.ascontiguousarray(values, np.float32)
    scale, zero_point = _scale_and_zero_point(details)
    info = np.iinfo(dtype)
    return np.clip(np.round(values / scale) + zero_point, info.min, info.max).astype(dtype)


def dequantize(values: np.ndarray, details: dict) -> np.ndarray:
    """An integer tensor -> float32 ``(q - zero_point) * scale``; float tensors unchanged."""
    if np.dtype(details["dtype"]).kind == "f":
        return np.asarray(values, np.float32)
    scale, zero_point = _scale_and_zero_point(details)
    return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)
