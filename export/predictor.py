"""``Predictor``: one API over SavedModel folders, ``.tflite`` and ``.onnx`` files, preset folders and zoo names.

Image files go through the model's input policy (``nin_keras.data.input_policy``): the one its
metadata records, or its data set's default, so a photo of any size and mode is resized,
center-cropped and converted exactly as every other entry point of the library does it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from nin_keras.data.input_policy import InputPolicy, policy_from_metadata
from nin_keras.data.model_io import ImageInput, are_paths, check_top_k, image_batch, top_k_classes
from nin_keras.errors import ExportError, NinKerasError
from nin_keras.export.metadata import metadata_path, read_metadata

#: The model inside a web export folder (``export/web.py``'s ``MODEL_FILE``; that module needs TensorFlow).
WEB_MODEL_FILE = "model.onnx"


def artifact_format(path: str | os.PathLike) -> str:
    """``"savedmodel"``, ``"tflite"``, ``"onnx"`` (a file, or a web export folder holding
    ``model.onnx``) or ``"preset"`` (a preset folder with a ``config.json``, or a zoo name such
    as ``nin_cifar10.caffe``) from a path or name.

    Raises:
        ValueError: the path does not exist or is none of these.
    """
    path = Path(path)
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return "savedmodel"
        if (path / "config.json").is_file():
            return "preset"
        if (path / WEB_MODEL_FILE).is_file():
            return "onnx"
        raise ValueError(f"artifact {str(path)!r} is a folder without saved_model.pb, config.json or "
                         f"{WEB_MODEL_FILE} (a SavedModel, a preset or a web export)")
    if not path.exists() and path.suffix not in (".tflite", ".onnx") and len(path.parts) == 1:
        return "preset"  # a zoo name; ImageClassifier.from_preset suggests close names for a typo
    if not path.is_file():
        raise ValueError(f"artifact {str(path)!r} does not exist")
    formats = {".tflite": "tflite", ".onnx": "onnx"}
    if path.suffix not in formats:
        raise ValueError(f"artifact {str(path)!r} is not a SavedModel folder, .tflite or .onnx file")
    return formats[path.suffix]


#: Runtimes that run each format; the first is the default.
RUNTIMES = {"savedmodel": ("tensorflow",), "tflite": ("litert",), "onnx": ("onnxruntime", "openvino"),
            "preset": ("keras",)}


class Predictor:
    """Classify images with an exported artifact in its own runtime (TF, LiteRT, ONNX Runtime or
    OpenVINO), or with a preset's Keras inference model.

    Class names, the input shape, the input policy and whether the artifact takes raw pixels
    come from the metadata JSON beside the artifact (written by :func:`nin_keras.export.export`);
    without it, classes are named ``"0"``, ``"1"``, ..., the input is assumed to be raw pixels
    and image files get the default policy for the input's shape. A preset (folder or zoo name)
    gives its own metadata and policy.

    A corrupt, truncated or empty artifact (``.onnx``, ``.tflite``, a SavedModel's
    ``saved_model.pb``) raises :class:`~nin_keras.errors.ExportError` naming it, whatever its
    runtime raised, and so does metadata whose class names do not match the artifact's outputs.

    Args:
        path: a SavedModel folder, a ``.tflite`` file, a ``.onnx`` file, a web export folder
            (its ``model.onnx``), a preset folder or a zoo name (``"nin_cifar10"``,
            ``"nin_cifar10.caffe"``).
        num_threads: CPU threads for the runtime (``None``: the runtime's default).
        runtime: for ``.onnx`` files, ``"onnxruntime"`` (default) or ``"openvino"``
            (:func:`nin_keras.export.openvino.load_openvino`).
        input_policy: how image files become inputs, instead of the recorded one (e.g.
            ``predictor.input_policy.replace(resize=False)`` for the strict mode).

    Example:
        >>> predictor = Predictor("out/nin_cifar10.int8.onnx")
        >>> predictor.classify(["frog.jpg", "ship.jpg"], top_k=2)
        [[('frog', 0.93), ('cat', 0.04)], [('ship', 0.88), ('airplane', 0.07)]]
    """

    def __init__(self, path: str | os.PathLike, num_threads: int | None = None,
                 runtime: str | None = None, input_policy: InputPolicy | None = None):
        self.format = artifact_format(path)
        self.path = Path(path)
        if self.path.is_dir() and self.format == "onnx":  # a web export: the page's model and metadata
            self.path = self.path / WEB_MODEL_FILE
        self.runtime = runtime or RUNTIMES[self.format][0]
        if self.runtime not in RUNTIMES[self.format]:
            raise ValueError(f"runtime {self.runtime!r} does not run {self.format} artifacts; "
                             f"use one of {RUNTIMES[self.format]}")
        self.metadata: dict[str, Any] = {} if self.format == "preset" else read_metadata(self.path) or {}
        # A preset's own errors name the problem (an unknown zoo name with its close matches); a
        # runtime's are about a broken file.
        with contextlib.nullcontext() if self.format == "preset" else self._artifact_errors("cannot load"):
            self._run = self._load(num_threads)
            self.raw_pixels = self.metadata.get("include_preprocessing", True)
            shape = self.metadata.get("input", {}).get("shape")
            self.input_shape = tuple(shape[1:]) if shape else self._probe_input_shape()
        self.class_names = self.metadata.get("class_names")
        if self.class_names is not None and not (isinstance(self.class_names, list)
                                                 and all(isinstance(n, str) for n in self.class_names)):
            raise ExportError(f"{metadata_path(self.path)}: 'class_names' must be a list of strings")
        self.input_policy = input_policy
        if input_policy is None and self.raw_pixels:
            try:
                self.input_policy = policy_from_metadata(self.metadata, self.input_shape)
            except ValueError as err:
                raise ValueError(f"metadata of {str(self.path)!r}: input_policy: {err}") from err
        if self.input_policy is not None and self.input_policy.input_shape != self.input_shape:
            raise ValueError(f"input policy makes {self.input_policy.input_shape} images, the model "
                             f"{str(self.path)!r} takes {self.input_shape}")

    def _load(self, num_threads: int | None):
        if self.format == "preset":
            self.metadata, run = _keras_runner(os.fspath(self.path))
            return run
        if self.format == "savedmodel":
            from nin_keras.export.savedmodel import load_savedmodel
            return load_savedmodel(self.path)
        if self.format == "tflite":
            from nin_keras.export.runtime import load_tflite
            return load_tflite(self.path, num_threads=num_threads)
        if self.runtime == "openvino":
            from nin_keras.export.openvino import load_openvino
            return load_openvino(self.path, num_threads=num_threads)
        from nin_keras.export.runtime import load_onnx
        return load_onnx(self.path, num_threads=num_threads)

    @contextlib.contextmanager
    def _artifact_errors(self, doing: str):
        """Turn whatever a runtime raises on a broken artifact into ``ExportError`` naming it."""
        try:
            yield
        except NinKerasError:
            raise
        except Exception as err:  # ONNX Runtime, LiteRT, OpenVINO and TF each raise their own types
            raise ExportError(f"{doing} the {self.format} artifact {str(self.path)!r} (corrupt or "
                              f"truncated?): {type(err).__name__}: {_first_line(err)}") from err

    def predict_proba(self, images: ImageInput) -> np.ndarray:
        """Class probabilities ``float32 [N, classes]`` for image files or arrays.

        Args:
            images: an image file path, a list of paths, one image array ``(H, W, C)`` (or
                ``(H, W)`` for one channel) or a batch ``(N, H, W, C)``. Arrays are uint8, or
                float in ``[0, 255]``; for an artifact exported with
                ``include_preprocessing=False`` they are float network inputs.

        Raises:
            ValueError: empty batch, wrong shape or dtype, non-finite or out-of-range values, or
                an unreadable image file.
        """
        batch = self._as_batch(images)
        with self._artifact_errors("cannot run"):
            probabilities = self._run(batch)
        if self.class_names is None:
            self.class_names = [str(i) for i in range(probabilities.shape[-1])]
        if len(self.class_names) != probabilities.shape[-1]:
            raise ExportError(f"{metadata_path(self.path)} lists {len(self.class_names)} class names, but the "
                              f"artifact has {probabilities.shape[-1]} outputs")
        return probabilities

    def classify(self, images: ImageInput, top_k: int = 5) -> list[list[tuple[str, float]]]:
        """Top-``k`` ``(class name, probability)`` pairs per image, most probable first (the same
        method as ``ImageClassifier.classify``)."""
        check_top_k(top_k)
        return top_k_classes(self.predict_proba(images), self.class_names, top_k)

    def predict(self, images: ImageInput, top_k: int = 5) -> list[list[tuple[str, float]]]:
        """Deprecated name of :meth:`classify` (in Keras, ``predict`` gives probabilities)."""
        import warnings

        warnings.warn("Predictor.predict is deprecated; use Predictor.classify (the name "
                      "ImageClassifier uses)", DeprecationWarning, stacklevel=2)
        return self.classify(images, top_k)

    def _as_batch(self, images: ImageInput) -> np.ndarray:
        if not self.raw_pixels and are_paths(images):
            raise ValueError(f"artifact {str(self.path)!r} was exported without "
                             "preprocessing; pass preprocessed arrays, not image files")
        return image_batch(images, self.input_shape, self._read, raw_pixels=self.raw_pixels)

    def _read(self, path: str | os.PathLike) -> np.ndarray:
        if self.input_policy is None:
            raise ValueError(f"image files need a fixed-size 1- or 3-channel model input, "
                             f"{str(self.path)!r} takes {self.input_shape}")
        return self.input_policy(path)

    def _probe_input_shape(self) -> tuple[int, ...]:
        """Input ``(H, W, C)`` read from the artifact itself when there is no metadata."""
        if self.format == "onnx":
            import onnx
            dims = onnx.load(str(self.path)).graph.input[0].type.tensor_type.shape.dim
            return tuple(int(d.dim_value) for d in dims[1:])
        if self.format == "tflite":
            from ai_edge_litert.interpreter import Interpreter
            return tuple(int(d) for d in Interpreter(str(self.path)).get_input_details()[0]["shape"][1:])
        spec = self._run.loaded.signatures["serving_default"].structured_input_signature[1]
        return tuple(int(d) for d in next(iter(spec.values())).shape[1:])


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""


def _keras_runner(preset_name: str) -> tuple[dict[str, Any], Any]:
    """Metadata (in the export metadata's shape) and a batch runner for a preset's inference model."""
    import keras

    from nin_keras.export.runtime import batched
    from nin_keras.zoo.classifier import ImageClassifier

    model = ImageClassifier.from_preset(preset_name)
    shape = list(model.input_shape[1:])
    metadata = {"format": "preset", "source": {"preset": preset_name},
                "dataset": model.metadata.get("dataset"), "class_names": model.class_names,
                "input": {"shape": [None, *shape], "values": "raw pixels in [0, 255]"},
                "include_preprocessing": True,
                "input_policy": None if model.input_policy is None else model.input_policy.to_dict()}
    return metadata, lambda batch: batched(lambda x: keras.ops.convert_to_numpy(model(x, training=False)), batch)
