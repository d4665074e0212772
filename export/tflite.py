"""TFLite (LiteRT) export: float32, float16, dynamic-range int8 and full-integer int8.

Conversion goes through ``tf.lite.TFLiteConverter.from_concrete_functions`` on the shared serving
function (frozen: variables folded into constants), restricted to TFLite built-in ops: an artifact that would need the Flex delegate
(``SELECT_TF_OPS``) is rejected with :class:`~nin_keras.errors.ExportError`, because the stock
LiteRT runtime cannot run it. Artifacts run with ``ai_edge_litert.interpreter.Interpreter``.

Quantization modes (``quantize``):

- ``None``: float32.
- ``"float16"``: float16 weights; the CPU kernels compute in float32 (weights are dequantized once
  at load time), so parity uses a looser bound (see :mod:`nin_keras.export.parity`).
- ``"dynamic"``: int8 weights, activations quantized on the fly (no calibration data needed).
  Every large weight is quantized, the baked-in ZCA matrix included: NIN CIFAR-10 with ZCA then
  falls below the parity bounds (top-1 agreement 0.88) and the export is refused; use ``"int8"``.
- ``"int8"``: full-integer int8 weights and activations, calibrated on ``representative_data``
  (real training images). Input and output stay float32 (a quantize op at the input and a
  dequantize op at the output), so the artifact keeps the float signature. Layers named in
  ``float_layers`` (the baked-in GCN/ZCA/LCN) stay float32 through selective quantization
  (``tf.lite.experimental.QuantizationDebugger`` with denylisted nodes): in int8, GCN's norm and
  the 3072 x 3072 ZCA product cost NIN CIFAR-10 1-2 points of accuracy, in float they cost ~4% of
  the multiply-adds. The metadata lists which ops run in integer and which in float.

``integer_io=True`` (with ``"int8"``) makes the artifact *integer-only*, what microcontrollers
and NPUs run: uint8 input (raw pixels: the calibrated input scale is 1 and the zero point 0 when
calibration images span 0..255), uint8 output (probability = value / 256), only
``TFLITE_BUILTINS_INT8`` kernels, and no float tensor anywhere, preprocessing included. The
converter's promise is not trusted: ``float_tensors`` reads the flatbuffer and the export is
refused if any tensor is float. Run such files in LiteRT (``load_tflite``) or in TensorFlow Lite
for Microcontrollers (:mod:`nin_keras.export.micro`).
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np
from nin_keras.tensorflow_only import import_tensorflow

tf = import_tensorflow(__name__)

from nin_keras.errors import ExportError
from nin_keras.export.serving import ServingModule
from nin_keras.tf_startup import quiet_output

QUANTIZE_MODES = (None, "float16", "dynamic", "int8")


def convert_tflite(module: ServingModule, quantize: str | None = None,
                   representative_data: np.ndarray | None = None,
                   float_layers: Sequence[str] = (), integer_io: bool = False) -> bytes:
    """Convert the serving function to a TFLite flatbuffer with built-in ops only.

    Args:
        module: the serving module to convert.
        quantize: one of ``None``, ``"float16"``, ``"dynamic"``, ``"int8"``.
        representative_data: float32 ``[N, H, W, C]`` images in the model's input space, required
            for ``"int8"`` (a few hundred real training images are plenty).
        float_layers: names of Keras layers whose ops stay float32 under ``"int8"`` (ignored
            with ``integer_io``: nothing stays float there).
        integer_io: integer-only artifact (uint8 in and out, int8 kernels only; needs ``"int8"``).

    Returns:
        The ``.tflite`` flatbuffer bytes.

    Raises:
        ExportError: the graph needs ops outside the TFLite built-in set, an integer-only
            artifact would keep an op or tensor in float, or conversion failed.
    """
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"quantize must be one of {QUANTIZE_MODES}, got {quantize!r}")
    if integer_io and quantize != "int8":
        raise ValueError(f"integer_io needs quantize='int8', got quantize={quantize!r}")
    frozen = module.frozen_function()
    with quiet_output():  # absl: "Please consider providing the trackable_obj argument"
        converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    # Built-ins only: never let the converter fall back to Flex (SELECT_TF_OPS).
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        if representative_data is None or len(representative_data) == 0:
            raise ValueError("representative_data is required for quantize='int8'")
        samples = np.asarray(representative_data, np.float32)
        converter.representative_dataset = lambda: ([samples[i:i + 1]] for i in range(len(samples)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                               tf.lite.OpsSet.TFLITE_BUILTINS]
        if integer_io:
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.uint8
            converter.inference_output_type = tf.uint8
    try:
        with quiet_output():  # the quantizer's settings, the debugger's deprecation warnings
            if quantize == "int8" and float_layers and not integer_io:
                flatbuffer = _selective_int8(frozen, converter, samples, float_layers)
            else:
                flatbuffer = converter.convert()
    except Exception as err:  # the converter raises ConverterError or plain exceptions
        message = str(err)
        if integer_io and ("quantiz" in message.lower() or "int8" in message.lower()):
            raise ExportError(
                f"model {module.model.name!r} has ops without an int8 TFLite kernel, so it cannot be "
                f"exported integer-only (export it with quantize='int8' alone to keep them float). "
                f"Converter message: {_first_lines(message)}") from err
        if "Flex" in message or "Select TF" in message or "not supported" in message:
            raise ExportError(
                f"model {module.model.name!r} uses TensorFlow ops that have no TFLite built-in "
                "kernel; it would need the Flex delegate (SELECT_TF_OPS), which nin-keras does not "
                f"export. Converter message: {_first_lines(message)}") from err
        raise ExportError(f"TFLite conversion of {module.model.name!r} failed: "
                          f"{_first_lines(message)}") from err
    check_builtin_ops(flatbuffer)
    if integer_io:
        check_integer_only(flatbuffer)
    return flatbuffer


def float_tensors(flatbuffer: bytes) -> list[str]:
    """Names of the float (32, 16 or 64 bit) tensors in every subgraph, read from the flatbuffer."""
    from tensorflow.lite.python import schema_py_generated as schema

    floats = {schema.TensorType.FLOAT32, schema.TensorType.FLOAT16, schema.TensorType.FLOAT64}
    model = schema.Model.GetRootAsModel(flatbuffer, 0)
    names = []
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for t in range(graph.TensorsLength()):
            tensor = graph.Tensors(t)
            if tensor.Type() in floats:
                names.append((tensor.Name() or b"").decode())
    return names


def float_operators(flatbuffer: bytes) -> list[str]:
    """``"OP (tensor name)"`` for every operator with a float input or output, read from the
    flatbuffer: the ops that kept an artifact from being integer-only."""
    from tensorflow.lite.python import schema_py_generated as schema

    floats = {schema.TensorType.FLOAT32, schema.TensorType.FLOAT16, schema.TensorType.FLOAT64}
    model = schema.Model.GetRootAsModel(flatbuffer, 0)
    codes = operator_names(flatbuffer)
    found = []
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for o in range(graph.OperatorsLength()):
            op = graph.Operators(o)
            tensors = [graph.Tensors(i) for i in [*op.InputsAsNumpy(), *op.OutputsAsNumpy()] if i >= 0]
            floating = [t for t in tensors if t.Type() in floats]
            if floating:
                found.append(f"{codes[op.OpcodeIndex()]} ({(floating[-1].Name() or b'').decode()})")
    return found


def check_integer_only(flatbuffer: bytes) -> None:
    """Raise :class:`ExportError` naming the float ops (and tensors) if the artifact is not integer-only."""
    floating = float_tensors(flatbuffer)
    if floating:
        ops = float_operators(flatbuffer)
        # The (de)quantize ops around a float op only mark its border: name the op itself.
        ops = [op for op in ops if op.split()[0] not in ("QUANTIZE", "DEQUANTIZE")] or ops
        raise ExportError(f"integer-only TFLite artifact keeps {len(ops)} op(s) in float, which have no int8 "
                          f"kernel or could not be calibrated: {', '.join(ops[:5])}{' ...' if len(ops) > 5 else ''} "
                          f"({len(floating)} float tensor(s)); export with quantize='int8' alone to keep them float")


def _builtin_names() -> dict[int, str]:
    from tensorflow.lite.python import schema_py_generated as schema

    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def _selective_int8(frozen, converter, samples: np.ndarray, float_layers: Sequence[str]) -> bytes:
    """Full-integer conversion with the ops of ``float_layers`` denylisted (kept float32)."""
    from ai_edge_litert.interpreter import Interpreter

    float_model = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    interpreter = Interpreter(model_content=float_model.convert())
    tensors = interpreter.get_tensor_details()
    # Op output tensors are named after the TF ops: ".../<layer name>_<n>/<op>".
    scope = re.compile("|".join(rf"/{re.escape(name)}(_\d+)?/" for name in float_layers))
    denylist = sorted({tensors[i]["name"] for op in interpreter._get_ops_details()
                       for i in op["outputs"] if i >= 0 and scope.search(tensors[i]["name"])})
    if not denylist:  # the layers were folded into their neighbours (e.g. a scale into a conv)
        return converter.convert()
    # The debugger only needs a few batches to set up; calibration uses all samples.
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter,
        debug_dataset=lambda: ([samples[i:i + 1]] for i in range(0, len(samples), 25)),
        debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=denylist))
    return debugger.get_nondebug_quantized_model()


def operator_names(flatbuffer: bytes) -> list[str]:
    """Names of the operator codes a ``.tflite`` flatbuffer uses (custom ops by their custom code,
    e.g. ``FlexMatrixInverse``)."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(flatbuffer, 0)
    by_code = _builtin_names()
    names = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            names.append((code.CustomCode() or b"").decode())
        else:
            names.append(by_code.get(builtin, str(builtin)))
    return names


def check_builtin_ops(flatbuffer: bytes) -> None:
    """Raise :class:`ExportError` if the flatbuffer holds custom or Flex ops."""
    builtins = set(_builtin_names().values()) - {"CUSTOM"}
    custom = [n for n in operator_names(flatbuffer) if n not in builtins]
    if custom:
        raise ExportError(f"TFLite artifact needs non-built-in ops {custom} (Flex delegate / "
                          "SELECT_TF_OPS or custom ops); only built-in ops are supported")


def op_types(flatbuffer: bytes) -> dict[str, list[str]]:
    """Operator names split into integer-quantized and float ones (for the metadata report)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer)
    details = interpreter.get_tensor_details()
    dtype_of = {d["index"]: np.dtype(d["dtype"]).name for d in details}
    float_ops, int_ops = set(), set()
    for op in interpreter._get_ops_details():  # no public per-op API in LiteRT
        outputs = [i for i in op["outputs"] if i >= 0]
        kind = {dtype_of[i] for i in outputs}
        (float_ops if kind & {"float32", "float16"} else int_ops).add(op["op_name"])
    return {"integer": sorted(int_ops), "float": sorted(float_ops)}


def _first_lines(message: str, n: int = 6) -> str:
    lines = [line for line in message.strip().splitlines() if line.strip()]
    return "\n".join(lines[:n])
