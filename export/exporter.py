"""``export()``: one call that writes SavedModel, TFLite, ONNX and web artifacts, each verified.

Every artifact is written to a temporary path beside its final name, loaded in its own runtime,
checked for parity against the Keras model (:mod:`nin_keras.export.parity`) on real images from
the model's data set, and only then renamed into place; its metadata JSON
(:mod:`nin_keras.export.metadata`) is written after it, and the old metadata is removed just before
the rename, so a kill at any moment never pairs metadata with an artifact it does not describe.
A failed conversion or parity check, an output folder that cannot be written and an artifact path
taken by something else (a folder where a ``.tflite`` goes, a file where a SavedModel goes) raise
:class:`~nin_keras.errors.ExportError` and leave no file behind; the paths are checked before any
conversion.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import re
import tempfile
import urllib.parse
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import keras
import numpy as np

from nin_keras.errors import ExportError
from nin_keras.export import metadata as meta
from nin_keras.export import samples
from nin_keras.export import onnx as onnx_format
from nin_keras.export import tflite as tflite_format
from nin_keras.export import web
from nin_keras.export.onnx import DEFAULT_OPSET, convert_onnx, quantize_onnx
from nin_keras.export.parity import ParityTolerance, parity_report
from nin_keras.export.savedmodel import load_savedmodel, write_savedmodel
from nin_keras.export.runtime import INPUT_NAME, OUTPUT_NAME, Runner, batched, load_onnx, load_tflite
from nin_keras.export.serving import ServingModule
from nin_keras.export.tflite import convert_tflite, op_types
from nin_keras.export.whitening_int8 import rounded_whitening
from nin_keras.io_utils import atomic_dir, atomic_write
from nin_keras.layers import PREPROCESSING_LAYERS, ConvWhitening
from nin_keras.zoo.classifier import ImageClassifier, split_preprocessing

FORMATS = ("savedmodel", "tflite", "onnx", "web")
#: What ``export()`` and ``nin-keras export`` write unless told: the three model files (the web
#: folder, a page around an ONNX model, is asked for by name).
DEFAULT_FORMATS = ("savedmodel", "tflite", "onnx")
EXTENSIONS = {"savedmodel": ".savedmodel", "tflite": ".tflite", "onnx": ".onnx", "web": ".web"}
#: Formats whose artifact is a folder, and the file that marks a folder as one of them.
FOLDER_MARKERS = {"savedmodel": "saved_model.pb", "web": web.METADATA_FILE}
QUANTIZE_MODES = tflite_format.QUANTIZE_MODES
#: Which quantization modes each format implements; SavedModel is always float32.
SUPPORTED_QUANTIZATION = {"savedmodel": (None,), "tflite": tflite_format.QUANTIZE_MODES,
                          "onnx": onnx_format.QUANTIZE_MODES, "web": onnx_format.QUANTIZE_MODES}


@dataclasses.dataclass
class ExportSource:
    """What gets exported and what it is checked against.

    Attributes:
        name: artifact base name (preset or model name).
        model: the Keras model traced into the artifact.
        preprocess: raw images -> ``model`` inputs when the preprocessing is *not* baked in.
        preprocessing_config: serialized preprocessing layers (metadata).
        dataset: data set name for parity/calibration images and class names, if known.
        class_names: one name per output class.
        preset: the preset the model came from, if any.
        weights_file_sha256: sha256 of the preset's ``model.weights.h5``, if any.
        input_policy: how an image file becomes the raw input (``InputPolicy.to_dict()``, with
            its steps in words), or None when the raw input is not a fixed-size image.
    """

    name: str
    model: keras.Model
    preprocess: keras.Model | None
    preprocessing_config: list[dict[str, Any]]
    dataset: str | None
    class_names: list[str]
    preset: str | None = None
    weights_file_sha256: str | None = None
    input_policy: dict[str, Any] | None = None


def export(model_or_name: keras.Model | str, formats: Sequence[str] = DEFAULT_FORMATS,
           out_dir: str | os.PathLike = ".", *, quantize: str | None = None,
           include_preprocessing: bool = True, representative_data: np.ndarray | None = None,
           parity_data: tuple[np.ndarray, np.ndarray | None] | None = None,
           dataset: str | None = None, opset: int = DEFAULT_OPSET,
           tolerance: ParityTolerance = ParityTolerance(), parity_samples: int = 500,
           calibration_samples: int = 200, name: str | None = None,
           integer_io: bool = False, accept_parity_failure: bool = False,
           progress: Callable[[str, Path], None] | None = None) -> dict[str, Path]:
    """Export a zoo model or a Keras model to SavedModel / TFLite / ONNX / a web page, verified by parity.

    Args:
        model_or_name: a preset (a zoo name with published weights such as
            ``"nin_cifar10"``, or a preset folder), or a Keras model taking raw images: an
            inference model (``nin_keras.zoo.inference_model``: preprocessing layers, then the
            network), a Sequential stack, or a bare network.
        formats: any of ``"savedmodel"``, ``"tflite"``, ``"onnx"`` and ``"web"`` (a folder with
            a page that classifies photos in the browser: :mod:`nin_keras.export.web`); default
            the first three.
        out_dir: folder for the artifacts and their metadata JSON files (created if needed, and
            removed again when the export fails and leaves it empty).
        quantize: ``None`` (float32), ``"float16"`` (TFLite only), ``"dynamic"`` or ``"int8"``
            (TFLite, ONNX and web). A format without the mode is written in float32 (SavedModel
            always; ONNX and web with ``"float16"``). For ``"web"``, ``None`` means
            int8 for a compact preset (a ``ConvWhitening`` preprocessing) and float32 otherwise.
        include_preprocessing: default ``True``: the artifact takes raw ``float32`` images with
            values in ``[0, 255]`` (uint8 pixel values) and applies the model's GCN/ZCA/LCN
            itself, so deployment cannot get preprocessing wrong. ``False`` exports the network
            alone; its input is the preprocessed tensor.
        representative_data: raw uint8 images ``[N, H, W, C]`` for int8 calibration (and for
            fitting float16 ``ConvWhitening`` weights, see ``whitening_int8.py``); by default
            ``calibration_samples`` images from the data set's training split.
        parity_data: ``(raw uint8 images, labels or None)`` for the parity check; by default
            ``parity_samples`` images from the data set's test split, or seeded random images when
            the model has no data set.
        dataset: data set name for a Keras model (zoo models know theirs).
        opset: ONNX opset.
        tolerance: parity bounds (defaults documented in :mod:`nin_keras.export.parity`).
        parity_samples: number of test images for the parity check.
        calibration_samples: number of training images for int8 calibration (and the float16
            whitening fit).
        name: artifact base name (default: the preset's or model's name: a zoo name, or the last
            part of a folder or URL, with characters other than letters, digits, ``.``, ``_``
            and ``-`` replaced by ``_``); every artifact is written inside ``out_dir``.
        integer_io: with ``quantize="int8"``, quantize everything, preprocessing included:
            the TFLite artifact becomes integer-only (uint8 raw pixels in, uint8 probabilities
            out, int8 kernels only, no float tensor; its metadata carries the flash size and
            tensor arena TensorFlow Lite for Microcontrollers needs), and the ONNX artifact
            quantizes the preprocessing layers too. Artifacts are named ``*.int8io.*``.
        accept_parity_failure: keep an artifact that fails its parity check (with a warning;
            its metadata records ``"passed": false`` and the failures) instead of raising.
        progress: called as ``progress(format, path)`` once each artifact is verified and its
            metadata written (``nin-keras export`` prints a line per artifact as it goes).

    Returns:
        ``{format: artifact path}``; each artifact has ``<artifact>.json`` beside it.

    Raises:
        ValueError: bad ``formats``/``quantize`` combination or arguments.
        ExportError: conversion or parity failed, ``out_dir`` cannot be written, an artifact path
            would lead outside ``out_dir`` (a link there), or an artifact
            path is taken by something that is not an artifact of that format (nothing is left
            behind).

    Example:
        >>> paths = export("nin_cifar10", formats=("tflite", "onnx"), out_dir="artifacts",
        ...                quantize="int8")
        >>> paths["onnx"].name
        'nin_cifar10.int8.onnx'
    """
    formats = _check_formats(formats, quantize)
    if name is not None and not _SAFE_NAME.fullmatch(name):
        raise ValueError(f"name must be a plain file name of letters, digits, '.', '_' and '-' (not starting with "
                         f"'.' or '-'), got {name!r}")
    if integer_io and quantize != "int8":
        raise ValueError(f"integer_io needs quantize='int8', got quantize={quantize!r}")
    if "web" in formats and not include_preprocessing:
        raise ValueError("the web export takes raw pixels from the page: it needs include_preprocessing=True")
    runtime = web.find_runtime() if "web" in formats else None  # before any conversion
    source = resolve_source(model_or_name, include_preprocessing=include_preprocessing,
                            dataset=dataset, name=name)
    out_dir = Path(out_dir)
    modes = {fmt: quantize if quantize in SUPPORTED_QUANTIZATION[fmt] else None for fmt in formats}
    if "web" in formats:
        web.check_policy(source.input_policy)
        if quantize is None:
            modes["web"] = web.default_quantization(source.model)
    suffixes = {fmt: "" if mode is None else f".{mode}io" if integer_io and mode == "int8" else f".{mode}"
                for fmt, mode in modes.items()}
    paths = {fmt: out_dir / f"{source.name}{suffixes[fmt]}{EXTENSIONS[fmt]}"
             for fmt in formats}
    existed = out_dir.exists()
    _check_outputs(out_dir, paths)
    with _no_empty_folder(out_dir, existed):
        module = ServingModule(source.model)

        raw_shape = tuple(source.model.inputs[0].shape[1:]) if source.preprocess is None \
            else tuple(source.preprocess.inputs[0].shape[1:])
        if parity_data is None:
            raw, labels, described = samples.parity_images(source.dataset, parity_samples, raw_shape)
        else:
            raw, labels = parity_data
            described = f"{len(raw)} caller-supplied images"
        inputs = _model_inputs(source, raw)
        reference = batched(lambda x: keras.ops.convert_to_numpy(source.model(x, training=False)),
                            inputs)
        calibration, calibration_source = None, None
        # int8 calibrates on training images; float16 fits its whitening weights on them.
        if "int8" in modes.values() or ("float16" in modes.values() and _has_conv_whitening(source.model)):
            if representative_data is None:
                representative_data, calibration_source = samples.calibration_images(
                    source.dataset, calibration_samples)
            else:
                calibration_source = f"{len(representative_data)} caller-supplied images"
            calibration = _model_inputs(source, representative_data)

        common = {
            "source": {"model": source.name, "preset": source.preset, "keras_model": source.model.name,
                       "weights_sha256": meta.weights_sha256(source.model),
                       "weights_file_sha256": source.weights_file_sha256,
                       "parameters": int(source.model.count_params())},
            "input": {"name": INPUT_NAME, "shape": [None, *module.input_shape], "dtype": "float32",
                      "layout": "NHWC",
                      "values": "raw pixels in [0, 255]" if source.preprocess is None
                      else "preprocessed (network input)"},
            "output": {"name": OUTPUT_NAME, "shape": [None, len(source.class_names)],
                       "dtype": "float32"},
            "class_names": source.class_names, "dataset": source.dataset,
            "input_policy": source.input_policy,
            "include_preprocessing": source.preprocess is None,
            "preprocessing": source.preprocessing_config,
            "versions": _versions(),
        }
        check = dict(reference=reference, labels=labels, tolerance=tolerance, images=described,
                     accept_failure=accept_parity_failure)
        written = {}
        for fmt in formats:
            mode, path = modes[fmt], paths[fmt]
            quant = {"mode": mode}
            if mode == "int8" or (mode == "float16" and calibration is not None):
                quant["calibration"] = {"images": int(len(calibration)), "source": calibration_source}
                quant["preprocessing"] = "int8" if integer_io else "float32"
            info = {**common, "format": fmt, "quantization": quant}
            integer_only = integer_io and mode == "int8" and fmt == "tflite"
            if integer_only:
                info["input"] = {**info["input"], "dtype": "uint8", "quantization": {"scale": None, "zero_point": None}}
                info["output"] = {**info["output"], "dtype": "uint8", "quantization": {"scale": None, "zero_point": None}}
            try:
                if fmt == "savedmodel":
                    _write_savedmodel(module, path, inputs, info, check)
                elif fmt == "tflite":
                    _write_tflite(module, path, mode, calibration, inputs, info, check, integer_only)
                elif fmt == "onnx":
                    _write_onnx(module, path, mode, calibration, opset, inputs, info, check, integer_io)
                else:
                    _write_web(source.model, path, mode, calibration, opset, inputs, info, check,
                               integer_io, runtime)
            except OSError as err:  # a full disk, a folder made read-only meanwhile
                raise ExportError(f"cannot write {path}: {type(err).__name__}: {err}") from err
            written[fmt] = path
            if progress is not None:
                progress(fmt, path)
        return written


@contextlib.contextmanager
def _no_empty_folder(out_dir: Path, existed: bool) -> Iterator[None]:
    """An output folder this export created is removed again if the export fails and leaves it
    empty (a failed parity check must not leave an empty folder behind)."""
    try:
        yield
    except BaseException:
        if not existed:
            with contextlib.suppress(OSError):  # not empty: an earlier artifact of this export stays
                out_dir.rmdir()
        raise


def _check_outputs(out_dir: Path, paths: dict[str, Path]) -> None:
    """Before any conversion: ``out_dir`` is a writable folder, every artifact and metadata path
    stays inside it, and no artifact path is taken by something an export must not replace."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as err:
        raise ExportError(f"cannot write to the output folder {out_dir}: {type(err).__name__}: {err}") from err
    root = out_dir.resolve()
    for written in (p for path in paths.values() for p in (path, meta.metadata_path(path))):
        if written.resolve().parent != root:
            raise ExportError(f"{written} would be written outside the output folder {out_dir} "
                              f"(it resolves to {written.resolve()}); not writing it")
    for fmt, path in paths.items():
        if fmt in FOLDER_MARKERS:
            if (path.exists() or path.is_symlink()) and not (path.is_dir() and (path / FOLDER_MARKERS[fmt]).is_file()):
                raise ExportError(f"{path} exists and is not a {fmt} export folder; not replacing it "
                                  "(remove it or choose another name or out_dir)")
        elif path.is_dir():
            kind = "a SavedModel folder" if (path / "saved_model.pb").is_file() else "a folder"
            raise ExportError(f"{path} is {kind}, not a {EXTENSIONS[fmt]} file; not replacing it "
                              "(remove it or choose another name or out_dir)")
        if meta.metadata_path(path).is_dir():
            raise ExportError(f"{meta.metadata_path(path)} (where the metadata goes) is a folder; not replacing it")


#: An artifact base name: one path component, never hidden, ``.``/``..`` or empty.
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


def _preset_base_name(preset: str) -> str:
    """The artifact base name of a preset reference: a folder's own name (``dir/..`` resolved
    first), a URL's last path part (not its scheme and host), or the zoo name, made safe."""
    if os.path.isdir(preset):
        return _safe_name(Path(preset).resolve().name)
    if "://" in preset:
        parts = [part for part in urllib.parse.urlsplit(preset).path.split("/") if part]
        return _safe_name(urllib.parse.unquote(parts[-1]) if parts else "")
    return _safe_name(preset)


def _safe_name(name: str) -> str:
    """``name`` with every character outside ``[A-Za-z0-9._-]`` replaced by ``_`` and leading
    dots and dashes dropped (no hidden file, no ``..``, nothing that reads as an option); an
    empty result becomes ``"preset"``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".-") or "preset"


def resolve_source(model_or_name: keras.Model | str, include_preprocessing: bool = True,
                   dataset: str | None = None, name: str | None = None) -> ExportSource:
    """Turn a preset (zoo name or folder) or a Keras inference model into an :class:`ExportSource`.

    A preset gives its network, fitted preprocessing layers, data set and class names. A Keras
    model is taken as an inference model (raw images in); its data set is ``dataset``, or the
    zoo entry's when the zoo built it.
    """
    from nin_keras.zoo import architectures, load_preset, presets, registry
    from nin_keras.zoo.preset_format import WEIGHTS_FILE

    preset_name, weights_file, preset = None, None, None
    if isinstance(model_or_name, (str, os.PathLike)):
        preset = load_preset(model_or_name)
        network, preprocessing = preset.model, preset.preprocessing
        dataset = dataset or preset.metadata.get("dataset")
        preset_name = os.fspath(model_or_name)
        weights_file = preset.metadata["files"][WEIGHTS_FILE]["sha256"]
        base_name = _preset_base_name(preset_name)
    elif isinstance(model_or_name, keras.Model):
        preprocessing, network = split_preprocessing(model_or_name)
        if isinstance(model_or_name, ImageClassifier):  # a classifier knows its names and policy
            preset = model_or_name
            dataset = dataset or model_or_name.metadata.get("dataset")
        built_by = architectures.architecture_of(network) or architectures.architecture_of(model_or_name)
        if dataset is None and built_by is not None:
            dataset = registry.get_model_entry(built_by[0]).dataset
        base_name = _safe_name(model_or_name.name)
    else:
        raise ValueError(f"model_or_name must be a keras.Model, a zoo name or a preset folder, "
                         f"got {type(model_or_name).__name__}")
    raw_shape = tuple(network.inputs[0].shape[1:])
    if include_preprocessing:
        model = presets.inference_model(network, preprocessing, input_dtype="float32",
                                        name=f"{network.name}_inference")
        preprocess = None
    else:
        model = network
        preprocess = keras.Sequential([keras.Input(raw_shape), *preprocessing],
                                      name="preprocessing")
    classes = int(network.outputs[0].shape[-1])
    # A fine-tuned preset names its own classes; the data set's names serve the others.
    own_names = preset.class_names if preset is not None else None
    return ExportSource(
        name=name or base_name, model=model, preprocess=preprocess,
        preprocessing_config=[keras.saving.serialize_keras_object(p) for p in preprocessing],
        dataset=dataset,
        class_names=list(own_names) if own_names and len(own_names) == classes
        else samples.class_names(dataset, classes),
        preset=preset_name, weights_file_sha256=weights_file,
        input_policy=_input_policy(preset, dataset, raw_shape))


def _input_policy(preset, dataset: str | None, raw_shape: tuple) -> dict[str, Any] | None:
    """The policy written into the metadata: the preset's, else the data set's default (None
    when the input is not a fixed-size 1- or 3-channel image)."""
    from nin_keras.data.input_policy import policy_from_metadata

    policy = preset.input_policy if preset is not None else None
    policy = policy or policy_from_metadata({"dataset": dataset}, raw_shape)
    return None if policy is None else policy.to_dict()


def _check_formats(formats: Iterable[str], quantize: str | None) -> tuple[str, ...]:
    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    formats = tuple(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if not formats or unknown:
        raise ValueError(f"formats must be a non-empty subset of {FORMATS}, got {formats}")
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"quantize must be one of {QUANTIZE_MODES}, got {quantize!r}")
    if quantize is not None and not any(quantize in SUPPORTED_QUANTIZATION[f] for f in formats):
        raise ValueError(f"quantize={quantize!r} applies to none of formats {formats} "
                         f"(supported: {SUPPORTED_QUANTIZATION})")
    return formats


def _model_inputs(source: ExportSource, raw: np.ndarray) -> np.ndarray:
    raw = np.asarray(raw, np.float32)
    # Caught here, bad images would surface later as a baffling parity or converter failure.
    expected = tuple((source.preprocess or source.model).inputs[0].shape[1:])
    if raw.ndim != len(expected) + 1 or any(e not in (None, d) for e, d in zip(expected, raw.shape[1:])):
        raise ValueError(f"parity/calibration images must have shape (N, {', '.join(map(str, expected))}), "
                         f"got {raw.shape}")
    if not np.isfinite(raw).all():
        raise ValueError("parity/calibration images contain NaN or infinite values")
    if source.preprocess is None:
        return raw
    return batched(lambda x: keras.ops.convert_to_numpy(source.preprocess(x)), raw)


def _verify(run: Runner, inputs: np.ndarray, mode: str | None, check: dict, fmt: str) -> dict:
    report = parity_report(check["reference"], run(inputs), check["labels"], quantize=mode,
                           tolerance=check["tolerance"], images=check["images"])
    if not report["passed"]:
        failed = (f"{fmt} artifact failed the parity check ({mode or 'float32'}): "
                  + "; ".join(report["failures"]))
        if not check["accept_failure"]:
            raise ExportError(f"{failed}; nothing written (pass accept_parity_failure=True to keep it anyway, "
                              "the failure recorded in its metadata)")
        warnings.warn(f"{failed}; kept (accept_parity_failure=True), the failure recorded in its metadata",
                      stacklevel=4)
    return report


def _seal(artifact_tmp: Path, path: Path, info: dict, report: dict) -> dict:
    """The metadata of the verified artifact at ``artifact_tmp``, to write once it is ``path``.

    Called last inside the artifact's atomic write: the old metadata goes now, so from the rename
    until the new metadata is written the artifact has none, never one describing something else.
    """
    metadata = _describe(artifact_tmp, path, info, report)
    meta.metadata_path(path).unlink(missing_ok=True)
    return metadata


def _describe(artifact_tmp: Path, path: Path, info: dict, report: dict) -> dict:
    """``info`` with the artifact's name, hash, size, parity report and creation time."""
    digest = meta.artifact_digest(artifact_tmp)
    return {**info, "artifact": path.name, "sha256": digest["sha256"], "bytes": digest["bytes"],
            "parity": report,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def _write_savedmodel(module, path, inputs, info, check):
    with atomic_dir(path, overwrite=True) as tmp:
        write_savedmodel(module, tmp)
        report = _verify(load_savedmodel(tmp), inputs, None, check, "savedmodel")
        metadata = _seal(tmp, path, info, report)
    meta.write_metadata(path, metadata)


def _write_tflite(module, path, mode, calibration, inputs, info, check, integer_only=False):
    grid = "int8" if integer_only else "float16" if mode == "float16" else None
    with _whitening_on_grid(module, calibration, info, grid):
        flatbuffer = convert_tflite(module, mode, calibration, _float_layers(module), integer_io=integer_only)
    with atomic_write(path) as tmp:
        tmp.write_bytes(flatbuffer)
        report = _verify(load_tflite(tmp), inputs, mode, check, "tflite")
        if mode is not None:
            info["quantization"]["ops"] = op_types(flatbuffer)
        if integer_only:
            _describe_integer_io(flatbuffer, info)
        metadata = _seal(tmp, path, info, report)
    meta.write_metadata(path, metadata)


def _describe_integer_io(flatbuffer: bytes, info: dict) -> None:
    """Input/output quantization and the microcontroller report of an integer-only artifact."""
    from ai_edge_litert.interpreter import Interpreter

    from nin_keras.export.micro import micro_report

    interpreter = Interpreter(model_content=flatbuffer)
    for key, details in (("input", interpreter.get_input_details()[0]), ("output", interpreter.get_output_details()[0])):
        scale, zero_point = details["quantization"]
        info[key]["quantization"] = {"scale": float(scale), "zero_point": int(zero_point),
                                     "real_value": "(q - zero_point) * scale"}
    info["micro"] = micro_report(flatbuffer)


def _write_onnx(module, path, mode, calibration, opset, inputs, info, check, integer_io=False):
    import onnx

    proto = _onnx_model(module, mode, calibration, opset, info, integer_io)
    with atomic_write(path) as tmp:
        onnx.save(proto, tmp)
        report = _verify(load_onnx(tmp), inputs, mode, check, "onnx")
        metadata = _seal(tmp, path, info, report)
    meta.write_metadata(path, metadata)


def _write_web(model, path, mode, calibration, opset, inputs, info, check, integer_io, runtime):
    """The page folder: the ONNX model (with the confidence maps as a second output where the
    network has them), verified like the ONNX artifact, then the page and the runtime; the
    model's metadata inside the folder, the folder's beside it."""
    import onnx

    module, head = web.serving_module(model)
    proto = _onnx_model(module, mode, calibration, opset, info, integer_io)
    with atomic_dir(path, overwrite=True) as tmp:
        model_path = tmp / web.MODEL_FILE
        onnx.save(proto, model_path)
        report = _verify(load_onnx(model_path), inputs, mode, check, "web")
        maps = None if head is None else web.check_maps(model_path, inputs, head)
        info["web"] = web.write_page(tmp, runtime, maps)
        meta.write_metadata(model_path, _describe(model_path, path / web.MODEL_FILE,
                                                  {**info, "format": "onnx"}, report))
        metadata = _seal(tmp, path, info, report)
    meta.write_metadata(path, metadata)


def _onnx_model(module, mode, calibration, opset, info, integer_io):
    """The converted (and, for a ``mode``, quantized) ONNX model; records how in ``info``."""
    with _whitening_on_grid(module, calibration, info, "int8" if integer_io and mode == "int8" else None):
        proto = convert_onnx(module, opset)
        if mode is not None:
            proto = quantize_onnx(proto, mode, calibration, () if integer_io else _float_layers(module))
    if mode is not None:
        info["quantization"]["method"] = (
            f"static QDQ on {', '.join(onnx_format.STATIC_INT8_OPS)}: per-channel int8 weights, "
            f"uint8 activations, {onnx_format.CALIBRATION_METHOD.lower()} calibration; "
            + ("preprocessing layers quantized too" if integer_io else "preprocessing layers float32")
            if mode == "int8" else "dynamic int8 weights")
    info["opset"] = opset
    return proto


@contextlib.contextmanager
def _whitening_on_grid(module: ServingModule, calibration: np.ndarray | None, info: dict,
                       grid: str | None) -> Iterator[None]:
    """While converting an artifact whose ``ConvWhitening`` weights become int8 or float16
    (``grid``; None: they stay float32), hold them on that grid as chosen by
    :func:`~nin_keras.export.whitening_int8.rounded_whitening` (rounded to nearest, a whitening
    kernel loses its small sum: int8 cost a CIFAR-10 NIN 11% top-1 agreement, float16 moved its
    probabilities by 0.02), and say so."""
    if grid is None or calibration is None:
        yield
        return
    with rounded_whitening(module.model, calibration, grid) as rounded:
        if rounded:
            info["quantization"]["whitening_weights"] = {
                "layers": rounded,
                "method": f"{grid}{' per output channel' if grid == 'int8' else ''}, each tap's value chosen to "
                          "minimise the layer's output error on the calibration images' patches (not rounded to "
                          "nearest); bias corrected"}
        yield


def _has_conv_whitening(model: keras.Model) -> bool:
    return any(isinstance(layer, ConvWhitening) for layer in split_preprocessing(model)[0])


def _float_layers(module: ServingModule) -> list[str]:
    """Layers kept float32 in int8 artifacts: the baked-in preprocessing (see tflite.py)."""
    return [layer.name for layer in module.model.layers if isinstance(layer, PREPROCESSING_LAYERS)]


def _versions() -> dict[str, str | None]:
    import importlib.metadata as md

    versions = {}
    for package in ("nin-keras", "tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime",
                    "ai-edge-litert"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            versions[package] = None
    return versions
