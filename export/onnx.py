"""ONNX export through tf2onnx, checked with ``onnx.checker`` and run with ONNX Runtime.

Route: ``tf2onnx.convert.from_function`` on the shared serving ``tf.function`` with an explicit
input signature. ``tf2onnx.convert.from_keras`` is not usable with Keras 3 (tf2onnx 1.17 reads
Keras-2-only attributes such as ``_get_save_spec`` / ``output_names``; onnx/tensorflow-onnx issues
#2329 and #2348), while converting the traced function works on TF 2.21 and needs no SavedModel on
disk. The batch dimension is renamed to the symbolic ``batch``.

Quantization (``quantize``) uses ``onnxruntime.quantization`` after ``quant_pre_process``
(shape inference and graph optimization):

- ``"int8"``: static QDQ on convolutions, their ReLUs and the pools (``STATIC_INT8_OPS``), int8
  weights per output channel, uint8 activations (ONNX Runtime's fast U8S8 path on x86) calibrated
  on real training images (``CALIBRATION_METHOD``). Nodes of ``float_layers`` (the baked-in
  preprocessing) stay float32, as in the TFLite exporter.
- ``"dynamic"``: int8 weights, activations quantized at run time (no calibration); the
  ``float_layers`` stay float32 here too.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from nin_keras.errors import ExportError
from nin_keras.export.runtime import INPUT_NAME
from nin_keras.export.serving import ServingModule
from nin_keras.tf_startup import quiet_output

#: Highest opset tf2onnx 1.17 supports; ONNX Runtime runs it on CPU.
DEFAULT_OPSET = 18
QUANTIZE_MODES = (None, "dynamic", "int8")
#: Op types static int8 quantizes: the convolutions and pools that hold nearly all the compute,
#: and the ReLUs between them. With the ReLUs left float, every convolution's output went
#: int8 -> float -> ReLU -> int8 (a DequantizeLinear / QuantizeLinear pair per layer); quantized,
#: ONNX Runtime folds each into its QLinearConv and the whole body runs in int8. The classifier's
#: softmax and global average stay float32: a uint8 softmax output rounds probabilities to 1/256
#: and turned near-ties into top-1 changes (NIN CIFAR-10: 1.2 points lost with every op quantized).
STATIC_INT8_OPS = ("Conv", "Relu", "MaxPool", "AveragePool")
#: Activation ranges from the 99.999th percentile of |x| rather than min/max: on NIN CIFAR-10
#: (1,000 test images, 256 calibration images) min/max lost 0.5 points of accuracy, this 0.2.
CALIBRATION_METHOD = "Percentile"


def convert_onnx(module: ServingModule, opset: int = DEFAULT_OPSET):
    """Convert the serving function to a checked ``onnx.ModelProto`` with a dynamic batch.

    Args:
        module: the serving module to convert.
        opset: ONNX opset (tf2onnx 1.17 supports up to 18).

    Raises:
        ExportError: tf2onnx cannot convert the graph, or the result fails ``onnx.checker``.
    """
    import tensorflow as tf
    import tf2onnx

    spec = tf.TensorSpec([None, *module.input_shape], tf.float32, name=INPUT_NAME)
    serve = _captured_tensors_as_constants(module.serve, spec)
    try:
        with quiet_output():
            proto, _ = tf2onnx.convert.from_function(serve, input_signature=[spec], opset=opset)
    except Exception as err:  # tf2onnx raises many types; surface them as one
        raise ExportError(f"ONNX conversion of {module.model.name!r} (opset {opset}) failed: "
                          f"{err}") from err
    for value in list(proto.graph.input) + list(proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "batch"
    names = ([i.name for i in proto.graph.input], sorted(o.name for o in proto.graph.output))
    if names != ([INPUT_NAME], sorted(module.output_names)):
        raise ExportError(f"ONNX graph has inputs/outputs {names}, expected "
                          f"[{INPUT_NAME!r}] -> {sorted(module.output_names)}")
    proto.producer_name = "nin-keras"
    check_onnx(proto)
    return proto


def _captured_tensors_as_constants(serve, spec):
    """``serve``, or where its trace captures tensors that are not variables, the same function
    with those tensors as constants.

    Keras keeps some fitted state as plain tensors rather than variables (``Normalization``'s mean
    and variance, computed from its weights when it is built or adapted). A traced function
    captures them as extra placeholders, and tf2onnx's ``from_function`` lists every placeholder
    of the function as a graph input: the ONNX model would ask for the statistics at run time.
    TensorFlow's own freezing turns the captures into constants; the frozen function is called
    from a new ``tf.function`` so that the input and output names stay the serving ones.
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    traced = serve.get_concrete_function(spec)
    if all(tensor.dtype == tf.resource for tensor in traced.captured_inputs):
        return serve
    frozen = convert_variables_to_constants_v2(traced)

    def call_frozen(images):
        return tf.nest.pack_sequence_as(traced.structured_outputs, frozen(images))

    return tf.function(call_frozen, input_signature=[spec], autograph=False)


def check_onnx(model) -> None:
    """Run ``onnx.checker`` (with full shape inference) and raise :class:`ExportError` on failure."""
    import onnx

    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as err:
        raise ExportError(f"ONNX model fails onnx.checker: {err}") from err


def quantize_onnx(model, quantize: str, calibration_data: np.ndarray | None = None,
                  float_layers: Sequence[str] = (), batch_size: int = 16):
    """Quantize a float ONNX model with ``onnxruntime.quantization``; return the new ModelProto.

    Args:
        model: float ``onnx.ModelProto`` from :func:`convert_onnx`.
        quantize: ``"int8"`` (static QDQ, needs ``calibration_data``) or ``"dynamic"``.
        calibration_data: float32 ``[N, H, W, C]`` real training images in the input space.
        float_layers: names of Keras layers whose nodes stay float32.
        batch_size: largest calibration batch (the largest divisor of the image count up to it).
    """
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quant_pre_process, quantize_dynamic,
                                          quantize_static)

    if quantize not in ("int8", "dynamic"):
        raise ValueError(f"quantize must be 'int8' or 'dynamic' for ONNX, got {quantize!r}")
    if quantize == "int8" and (calibration_data is None or len(calibration_data) == 0):
        raise ValueError("calibration_data is required for quantize='int8'")

    class _Reader(CalibrationDataReader):
        def __init__(self, images: np.ndarray):
            # Equal batches: the percentile calibrator stacks every batch's activations into
            # one array and fails on a shorter last batch.
            size = max(d for d in range(1, min(batch_size, len(images)) + 1) if len(images) % d == 0)
            self._batches = iter([images[i:i + size] for i in range(0, len(images), size)])

        def get_next(self):
            batch = next(self._batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    # The calibration prints its progress on stdout.
    with tempfile.TemporaryDirectory(prefix="nin_keras_onnx_") as tmp, quiet_output():
        float_path, prepared, quantized = (Path(tmp) / n for n in ("f.onnx", "p.onnx", "q.onnx"))
        onnx.save(model, float_path)
        # Static shapes except the batch: ONNX shape inference suffices (no sympy needed).
        quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
        excluded = float_nodes(onnx.load(prepared).graph, float_layers)
        if quantize == "int8":
            quantize_static(str(prepared), str(quantized),
                            _Reader(np.asarray(calibration_data, np.float32)),
                            quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=getattr(CalibrationMethod, CALIBRATION_METHOD),
                            op_types_to_quantize=list(STATIC_INT8_OPS),
                            nodes_to_exclude=excluded)
        else:
            quantize_dynamic(str(prepared), str(quantized), weight_type=QuantType.QInt8,
                             nodes_to_exclude=excluded)
        result = onnx.load(quantized)
    check_onnx(result)
    return result


def float_nodes(graph, float_layers: Sequence[str]) -> list[str]:
    """Names of the nodes of ``graph`` that belong to the Keras layers ``float_layers``.

    tf2onnx names a node after its TF op, ``.../<layer name>_<n>/<op>``, except nodes its
    optimizer makes by fusing ops, named ``<OpType>__<n>`` with no layer in them. A
    ``ConvWhitening``'s convolution and bias add become such a node (``Conv__100``), so an unscoped
    node whose data inputs all come from ``float_layers`` nodes (or the graph input) counts as one
    of them too. Missing it cost the compact CIFAR-10 int8 artifact 11% top-1 agreement: the
    whitening kernel in int8 loses its small sum, its response to the images' low frequencies.

    Args:
        graph: an ``onnx.GraphProto`` in topological order (as tf2onnx and ``quant_pre_process``
            write it).
        float_layers: Keras layer names.

    Returns:
        Node names, in graph order (empty when ``float_layers`` is).
    """
    if not float_layers:
        return []
    scope = re.compile("|".join(rf"/{re.escape(name)}(_\d+)?/" for name in float_layers))
    constants = {init.name for init in graph.initializer}
    constants.update(out for node in graph.node if node.op_type == "Constant" for out in node.output)
    produced_by_float = {value.name for value in graph.input}
    names = []
    for node in graph.node:
        data_inputs = [name for name in node.input if name and name not in constants]
        unscoped = "/" not in node.name
        if scope.search(node.name) or (unscoped and data_inputs
                                       and all(name in produced_by_float for name in data_inputs)):
            names.append(node.name)
            produced_by_float.update(node.output)
    return names
