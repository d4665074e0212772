"""``export()``: one call that writes SavedModel, TFLite, ONNX and web artifacts, each verified.

Each format is one :class:`FormatSpec` in :data:`SPECS`. Every artifact is written to a
temporary path beside its final name, loaded in its own runtime, checked for parity against the
Keras model (:mod:`nin_keras.export.parity`) on real images from the model's data set, and only
then renamed into place; its metadata JSON
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

from nin_keras.errors import Argument, ArgumentError, ExportError
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

#: What ``export()`` and ``nin-keras export`` write unless told: the three model files (the web
#: folder, a page around an ONNX model, is asked for by name).
DEFAULT_FORMATS = ("savedmodel", "tflite", "onnx")
QUANTIZE_MODES = tflite_format.QUANTIZE_MODES


@dataclasses.dataclass(frozen=True)
class FormatSpec:
    """One export format: all that ``export()`` knows about it (:data:`SPECS` holds one per format).

    Attributes:
        name: the format's name in ``formats`` and in its metadata's ``"format"``.
        extension: the artifact's suffix, after its base name and quantization mode.
        quantize_modes: the ``quantize`` modes it implements; with another it is written in float32.
        write: converts, writes and verifies one :class:`Artifact` (atomically, metadata last).
        load: the runtime its parity check runs the written artifact in (for a folder, the model
            file inside); the bound is ``tolerance``'s for the artifact's mode (float or quantized).
        folder_marker: for an artifact that is a folder, the file that marks a folder as one (an
            existing folder without it is never replaced); None for a single file.
        raw_pixels: why the format needs ``include_preprocessing=True``, if it does.
        prepare: finds what the format needs outside Python (the web page's runtime) before
            anything is loaded or converted; its result is the artifact's ``prepared``.
        check_source: refuses (``ExportError``) a source the format cannot serve.
        default_mode: the mode for ``quantize=None`` given the inference model (None: float32).
    """

    name: str
    extension: str
    quantize_modes: tuple[str | None, ...]
    write: Callable[[Artifact], None]
    load: Callable[[Path], Runner]
    folder_marker: str | None = None
    raw_pixels: str | None = None
    prepare: Callable[[], Any] | None = None
    check_source: Callable[[ExportSource], None] | None = None
    default_mode: Callable[[keras.Model], str | None] | None = None

    def mode(self, quantize: str | None, model: keras.Model) -> str | None:
        """The quantization the artifact gets for ``export(quantize=...)``."""
        if quantize is None and self.default_mode is not None:
            return self.default_mode(model)
        return quantize if quantize in self.quantize_modes else None

    def file_name(self, base: str, mode: str | None, integer_io: bool) -> str:
        """``<base>[.<mode>|.int8io]<extension>``."""
        suffix = "" if mode is None else ".int8io" if integer_io and mode == "int8" else f".{mode}"
        return f"{base}{suffix}{self.extension}"


@dataclasses.dataclass
class ParityCheck:
    """What every artifact of one export is checked against, and how a failure is taken."""

    inputs: np.ndarray  # what the artifact is fed (raw pixels, or preprocessed without preprocessing)
    reference: np.ndarray  # the Keras model's probabilities for them
    labels: np.ndarray | None
    tolerance: ParityTolerance
    images: str  # where the images come from, in words
    accept_failure: bool


@dataclasses.dataclass
class Artifact:
    """One artifact to write: what ``FormatSpec.write`` gets.

    Attributes:
        spec: its format.
        mode: its quantization (None: float32).
        integer_io: ``export(integer_io=True)`` with an int8 mode: preprocessing quantized too.
        path: where it goes (inside ``out_dir``).
        info: its metadata so far; ``write`` adds what it learns while converting.
        model: the inference model; ``module`` its serving module.
        calibration: model inputs for int8 calibration and float16 whitening fits, or None.
        opset: the ONNX opset.
        check: the parity check.
        prepared: what ``spec.prepare`` found, or None.
    """

    spec: FormatSpec
    mode: str | None
    integer_io: bool
    path: Path
    info: dict[str, Any]
    model: keras.Model
    module: ServingModule
    calibration: np.ndarray | None
    opset: int
    check: ParityCheck
    prepared: Any = None


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
            classifier (``nin_keras.zoo.ImageClassifier``: preprocessing layers, then the
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
        raise ArgumentError(Argument("name"), " must be a plain file name of letters, digits, '.', '_' and '-' "
                            f"(not starting with '.' or '-'), got {name!r}")
    if integer_io and quantize != "int8":
        raise ArgumentError(Argument("integer_io"), " needs ", Argument("quantize", "int8"), f", got {quantize!r}")
    specs = [SPECS[fmt] for fmt in formats]
    for spec in specs:
        if spec.raw_pixels and not include_preprocessing:
            raise ArgumentError(f"the {spec.name} export {spec.raw_pixels}: it needs ",
                                Argument("include_preprocessing", True))
    prepared = {spec.name: spec.prepare() for spec in specs if spec.prepare is not None}
    source = resolve_source(model_or_name, include_preprocessing=include_preprocessing,
                            dataset=dataset, name=name)
    for spec in specs:
        if spec.check_source is not None:
            spec.check_source(source)
    out_dir = Path(out_dir)
    modes = {spec.name: spec.mode(quantize, source.model) for spec in specs}
    paths = {spec.name: out_dir / spec.file_name(source.name, modes[spec.name], integer_io) for spec in specs}
    existed = out_dir.exists()
    _check_outputs(out_dir, paths)
    with _no_empty_folder(out_dir, existed):
        module = ServingModule(source.model)
        check = _parity_check(source, parity_data, parity_samples, tolerance, accept_parity_failure)
        calibration, calibration_source = _calibration(source, set(modes.values()), representative_data,
                                                       calibration_samples)
        common = _common_info(source, module)
        written = {}
        for spec in specs:
            mode, path = modes[spec.name], paths[spec.name]
            quant = {"mode": mode}
            if mode == "int8" or (mode == "float16" and calibration is not None):
                quant["calibration"] = {"images": int(len(calibration)), "source": calibration_source}
                quant["preprocessing"] = "int8" if integer_io else "float32"
            artifact = Artifact(spec=spec, mode=mode, integer_io=integer_io and mode == "int8", path=path,
                                info={**common, "format": spec.name, "quantization": quant}, model=source.model,
                                module=module, calibration=calibration, opset=opset, check=check,
                                prepared=prepared.get(spec.name))
            try:
                spec.write(artifact)
            except OSError as err:  # a full disk, a folder made read-only meanwhile
                raise ExportError(f"cannot write {path}: {type(err).__name__}: {err}") from err
            written[spec.name] = path
            if progress is not None:
                progress(spec.name, path)
        return written


def _parity_check(source: ExportSource, parity_data, parity_samples: int, tolerance: ParityTolerance,
                  accept_failure: bool) -> ParityCheck:
    """The parity images (the caller's, else the data set's test images) and Keras's answers."""
    raw_shape = tuple((source.preprocess or source.model).inputs[0].shape[1:])
    if parity_data is None:
        raw, labels, described = samples.parity_images(source.dataset, parity_samples, raw_shape)
    else:
        raw, labels = parity_data
        described = f"{len(raw)} caller-supplied images"
    inputs = _model_inputs(source, raw)
    reference = batched(lambda x: keras.ops.convert_to_numpy(source.model(x, training=False)), inputs)
    return ParityCheck(inputs=inputs, reference=reference, labels=labels, tolerance=tolerance,
                       images=described, accept_failure=accept_failure)


def _calibration(source: ExportSource, modes: set[str | None], representative_data: np.ndarray | None,
                 calibration_samples: int) -> tuple[np.ndarray | None, str | None]:
    """The calibration model inputs and where they come from, where a mode needs them: int8
    calibrates on training images; float16 fits its whitening weights on them."""
    if not ("int8" in modes or ("float16" in modes and _has_conv_whitening(source.model))):
        return None, None
    if representative_data is None:
        representative_data, described = samples.calibration_images(source.dataset, calibration_samples)
    else:
        described = f"{len(representative_data)} caller-supplied images"
    return _model_inputs(source, representative_data), described


def _common_info(source: ExportSource, module: ServingModule) -> dict[str, Any]:
    """The metadata every artifact of the export shares."""
    return {
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
        marker = SPECS[fmt].folder_marker
        if marker is not None:
            if (path.exists() or path.is_symlink()) and not (path.is_dir() and (path / marker).is_file()):
                raise ExportError(f"{path} exists and is not a {fmt} export folder; not replacing it "
                                  "(remove it or choose another name or out_dir)")
        elif path.is_dir():
            savedmodel = (path / SPECS["savedmodel"].folder_marker).is_file()
            kind = "a SavedModel folder" if savedmodel else "a folder"
            raise ExportError(f"{path} is {kind}, not a {SPECS[fmt].extension} file; not replacing it "
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
    from nin_keras.zoo import architectures, registry
    from nin_keras.zoo.preset_format import WEIGHTS_FILE

    preset_name, weights_file, preset = None, None, None
    if isinstance(model_or_name, (str, os.PathLike)):
        preset = ImageClassifier.from_preset(model_or_name)
        network, preprocessing = preset.backbone, preset.preprocessing
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
        model = ImageClassifier(network, preprocessing, name=f"{network.name}_inference")
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
        raise ArgumentError(Argument("formats"), f" must be a non-empty subset of {FORMATS}, got {formats}")
    if quantize not in QUANTIZE_MODES:
        raise ArgumentError(Argument("quantize"), f" must be one of {QUANTIZE_MODES}, got {quantize!r}")
    if quantize is not None and not any(quantize in SPECS[f].quantize_modes for f in formats):
        supported = {f: spec.quantize_modes for f, spec in SPECS.items()}
        raise ArgumentError(Argument("quantize", quantize), f" applies to none of formats {formats} "
                            f"(supported: {supported})")
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


def _verify(artifact: Artifact, runnable: Path) -> dict:
    """Run the written artifact (``runnable``: it, or the model file inside it) in its format's
    runtime on the parity images; raise unless it passes or a failure is accepted."""
    check, mode, fmt = artifact.check, artifact.mode, artifact.spec.name
    report = parity_report(check.reference, artifact.spec.load(runnable)(check.inputs), check.labels,
                           quantize=mode, tolerance=check.tolerance, images=check.images)
    if not report["passed"]:
        failed = (f"{fmt} artifact failed the parity check ({mode or 'float32'}): "
                  + "; ".join(report["failures"]))
        if not check.accept_failure:
            raise ExportError(f"{failed}; nothing written (pass ", Argument("accept_parity_failure", True),
                              " to keep it anyway, the failure recorded in its metadata)")
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


def _write_savedmodel(artifact: Artifact) -> None:
    with atomic_dir(artifact.path, overwrite=True) as tmp:
        write_savedmodel(artifact.module, tmp)
        report = _verify(artifact, tmp)
        metadata = _seal(tmp, artifact.path, artifact.info, report)
    meta.write_metadata(artifact.path, metadata)


def _write_tflite(artifact: Artifact) -> None:
    """A ``.tflite`` flatbuffer; with ``integer_io`` integer-only (uint8 in and out, described
    with its microcontroller report)."""
    module, mode, info = artifact.module, artifact.mode, artifact.info
    grid = "int8" if artifact.integer_io else "float16" if mode == "float16" else None
    with _whitening_on_grid(module, artifact.calibration, info, grid):
        flatbuffer = convert_tflite(module, mode, artifact.calibration, _float_layers(module),
                                    integer_io=artifact.integer_io)
    with atomic_write(artifact.path) as tmp:
        tmp.write_bytes(flatbuffer)
        report = _verify(artifact, tmp)
        if mode is not None:
            info["quantization"]["ops"] = op_types(flatbuffer)
        if artifact.integer_io:
            _describe_integer_io(flatbuffer, info)
        metadata = _seal(tmp, artifact.path, info, report)
    meta.write_metadata(artifact.path, metadata)


def _describe_integer_io(flatbuffer: bytes, info: dict) -> None:
    """The uint8 input/output and their quantization, and the microcontroller report, of an
    integer-only artifact."""
    from ai_edge_litert.interpreter import Interpreter

    from nin_keras.export.micro import micro_report

    interpreter = Interpreter(model_content=flatbuffer)
    for key, details in (("input", interpreter.get_input_details()[0]), ("output", interpreter.get_output_details()[0])):
        scale, zero_point = details["quantization"]
        info[key] = {**info[key], "dtype": "uint8",
                     "quantization": {"scale": float(scale), "zero_point": int(zero_point),
                                      "real_value": "(q - zero_point) * scale"}}
    info["micro"] = micro_report(flatbuffer)


def _write_onnx(artifact: Artifact) -> None:
    import onnx

    proto = _onnx_model(artifact, artifact.module)
    with atomic_write(artifact.path) as tmp:
        onnx.save(proto, tmp)
        report = _verify(artifact, tmp)
        metadata = _seal(tmp, artifact.path, artifact.info, report)
    meta.write_metadata(artifact.path, metadata)


def _write_web(artifact: Artifact) -> None:
    """The page folder: the ONNX model (with the confidence maps as a second output where the
    network has them), verified like the ONNX artifact, then the page and the runtime
    (``artifact.prepared``); the model's metadata inside the folder, the folder's beside it."""
    import onnx

    module, head = web.serving_module(artifact.model)
    proto = _onnx_model(artifact, module)
    path, info = artifact.path, artifact.info
    with atomic_dir(path, overwrite=True) as tmp:
        model_path = tmp / web.MODEL_FILE
        onnx.save(proto, model_path)
        report = _verify(artifact, model_path)
        maps = None if head is None else web.check_maps(model_path, artifact.check.inputs, head)
        info["web"] = web.write_page(tmp, artifact.prepared, maps)
        meta.write_metadata(model_path, _describe(model_path, path / web.MODEL_FILE,
                                                  {**info, "format": "onnx"}, report))
        metadata = _seal(tmp, path, info, report)
    meta.write_metadata(path, metadata)


def _onnx_model(artifact: Artifact, module: ServingModule):
    """``module`` converted to ONNX (and, for a mode, quantized); records how in the artifact's info."""
    mode, calibration, info, integer_io = artifact.mode, artifact.calibration, artifact.info, artifact.integer_io
    with _whitening_on_grid(module, calibration, info, "int8" if integer_io else None):
        proto = convert_onnx(module, artifact.opset)
        if mode is not None:
            proto = quantize_onnx(proto, mode, calibration, () if integer_io else _float_layers(module))
    if mode is not None:
        info["quantization"]["method"] = (
            f"static QDQ on {', '.join(onnx_format.STATIC_INT8_OPS)}: per-channel int8 weights, "
            f"uint8 activations, {onnx_format.CALIBRATION_METHOD.lower()} calibration; "
            + ("preprocessing layers quantized too" if integer_io else "preprocessing layers float32")
            if mode == "int8" else "dynamic int8 weights")
    info["opset"] = artifact.opset
    return proto


@contextlib.contextmanager
def _whitening_on_grid(module: ServingModule, calibration: np.ndarray | None, info: dict,
                       grid: str | None) -> Iterator[None]:
    """While converting an artifact whose ``ConvWhitening`` weights become int8 or float16
    (``grid``; None: they stay float32), hold them on that grid as chosen by
    :func:`~nin_keras.export.whitening_int8.rounded_whitening` (rounded to nearest, a whitening
    kernel loses its small sum: ``benchmarks/whitening_grid.py`` measures what each grid costs), and
    say so."""
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


#: One spec per format, in the order ``formats`` lists them.
SPECS: dict[str, FormatSpec] = {spec.name: spec for spec in (
    FormatSpec("savedmodel", ".savedmodel", (None,), _write_savedmodel, load_savedmodel,
               folder_marker="saved_model.pb"),
    FormatSpec("tflite", ".tflite", tflite_format.QUANTIZE_MODES, _write_tflite, load_tflite),
    FormatSpec("onnx", ".onnx", onnx_format.QUANTIZE_MODES, _write_onnx, load_onnx),
    FormatSpec("web", ".web", onnx_format.QUANTIZE_MODES, _write_web, load_onnx,
               folder_marker=web.METADATA_FILE, raw_pixels="takes raw pixels from the page",
               prepare=web.find_runtime, check_source=lambda source: web.check_policy(source.input_policy),
               default_mode=web.default_quantization),
)}
FORMATS = tuple(SPECS)
