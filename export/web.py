"""The web export: one static folder that classifies photos in the browser, with no network.

``export(..., formats=("web",))`` (``nin-keras export NAME --formats web``) writes
``<name>[.<mode>].web/``:

- ``index.html``, ``app.js``, ``input_policy.js``: the page (package data in ``export/web_page/``).
  ``input_policy.js`` is the JavaScript twin of :class:`nin_keras.data.input_policy.InputPolicy`
  (the same cover-resize arithmetic, Pillow's resampling filters in the same fixed point, the
  same luma formula), so the browser feeds the model what ``Predictor`` feeds it.
- ``model.onnx``: the ONNX export of the preset, with a second output ``confidence_maps`` (the
  input of the ``head`` layer, one map per class, as in ``confidence_map_model``) for
  global-average-pooling networks, so the page draws the top class's map from the same run.
  Compact presets (a ``ConvWhitening`` preprocessing) are quantized to int8 unless ``quantize``
  says otherwise; other presets stay float32 (their dense ZCA would stay a float matrix anyway).
- ``model.onnx.json``: that model's metadata (the ONNX exporter's, parity report included, plus a
  ``web`` section); ``Predictor(folder / "model.onnx")`` reads it, and so does the page.
- ``ort/``: ONNX Runtime Web's WebGPU bundle and its WebAssembly build, copied unchanged from the
  npm package ``onnxruntime-web`` at the version pinned in ``web/package.json``, with its licence in
  ``ort/LICENSE.txt``. That one bundle runs both the wasm and the WebGPU backends. The files come
  from :func:`runtime_folder`: ``$NIN_KERAS_WEB_RUNTIME``, else the copy an installed wheel carries
  (``web_runtime/`` beside this module, put there by ``setup.py`` from ``web/node_modules``), else
  a checkout's ``web/node_modules`` (``scripts/setup.sh --test`` installs it).

The folder needs any static HTTP server (``nin-keras serve FOLDER``); browsers do not run
WebAssembly modules from ``file://`` pages.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import keras
import numpy as np

from nin_keras.errors import ExportError
from nin_keras.export.runtime import INPUT_NAME, OUTPUT_NAME
from nin_keras.export.serving import ServingModule

PACKAGE = "onnxruntime-web"
#: The WebGPU build of ONNX Runtime Web and the one WebAssembly binary it loads: it runs the wasm
#: backend everywhere and the WebGPU backend where the browser has one.
RUNTIME_FILES = ("ort.webgpu.min.mjs", "ort-wasm-simd-threaded.asyncify.mjs",
                 "ort-wasm-simd-threaded.asyncify.wasm")
PAGE_FILES = ("index.html", "app.js", "input_policy.js")
MODEL_FILE = "model.onnx"
METADATA_FILE = MODEL_FILE + ".json"
MAPS_NAME = "confidence_maps"
#: The page refuses image files larger than this before reading them.
MAX_FILE_BYTES = 50 * 1024 * 1024
#: Names a folder holding a ``package.json`` that pins the runtime and its ``node_modules``.
RUNTIME_ENV = "NIN_KERAS_WEB_RUNTIME"
#: The wheel's copy of the runtime, in the layout of ``web/`` (``setup.py`` writes it; a checkout
#: and an editable install have none).
PACKAGED_RUNTIME = Path(__file__).resolve().parent / "web_runtime"
#: A checkout's ``web/`` folder.
CHECKOUT_RUNTIME = Path(__file__).resolve().parents[1] / "web"
_PAGE_DIR = Path(__file__).resolve().parent / "web_page"
_MIT = """MIT License

Copyright (c) Microsoft Corporation

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


def runtime_folder() -> Path:
    """The folder holding the pinned ``package.json`` and ``node_modules/onnxruntime-web``:
    ``$NIN_KERAS_WEB_RUNTIME``, else the wheel's :data:`PACKAGED_RUNTIME`, else a checkout's
    ``web/``."""
    if os.environ.get(RUNTIME_ENV):
        return Path(os.environ[RUNTIME_ENV])
    return PACKAGED_RUNTIME if PACKAGED_RUNTIME.is_dir() else CHECKOUT_RUNTIME


def find_runtime(folder: str | os.PathLike | None = None) -> dict[str, Any]:
    """The installed ``onnxruntime-web``, checked against the pinned version.

    Args:
        folder: where ``package.json`` and ``node_modules`` are (default :func:`runtime_folder`).

    Returns:
        ``{"package", "version", "license", "dist"}`` (``dist``: the folder the files come from).

    Raises:
        ExportError: no pin, the package is not installed, its version is not the pinned one, or
            one of :data:`RUNTIME_FILES` is missing; the message says how to install it.
    """
    folder = Path(folder) if folder is not None else runtime_folder()
    install = (f"install it with `npm ci --ignore-scripts --prefix {folder}` (scripts/setup.sh --test does), "
               f"or point ${RUNTIME_ENV} at a folder holding package.json and node_modules")
    try:
        pinned = json.loads((folder / "package.json").read_text())["dependencies"][PACKAGE]
    except (OSError, ValueError, KeyError, TypeError) as err:
        if folder == CHECKOUT_RUNTIME and not folder.is_dir():  # an installed wheel without a runtime
            raise ExportError(f"this installation of nin-keras has no web runtime: its wheel was built "
                              f"without web/node_modules (`scripts/setup.sh --test` installs it before "
                              f"building), so it carries no {PACKAGE}; point ${RUNTIME_ENV} at a folder "
                              f"holding a package.json that pins {PACKAGE} and its node_modules") from err
        raise ExportError(f"the web export needs {folder / 'package.json'} pinning {PACKAGE} "
                          f"({type(err).__name__}: {err})") from err
    package = folder / "node_modules" / PACKAGE
    try:
        installed = json.loads((package / "package.json").read_text())
    except (OSError, ValueError) as err:
        raise ExportError(f"{PACKAGE} {pinned} is not installed in {folder / 'node_modules'}; {install}") from err
    if installed.get("version") != pinned:
        raise ExportError(f"{package} is version {installed.get('version')}, the pin is {pinned}; {install}")
    dist = package / "dist"
    missing = [name for name in RUNTIME_FILES if not (dist / name).is_file()]
    if missing:
        raise ExportError(f"{dist} lacks {', '.join(missing)}; {install}")
    return {"package": PACKAGE, "version": pinned, "license": installed.get("license"), "dist": dist}


def check_policy(policy: dict[str, Any] | None) -> None:
    """Refuse input policies the page cannot reproduce.

    Args:
        policy: the export's ``input_policy`` (``InputPolicy.to_dict()``), or ``None``.

    Raises:
        ExportError: no policy (the input is not a fixed-size image), or one that ignores the
            EXIF orientation (browsers always apply it when they decode).
    """
    if policy is None:
        raise ExportError("the web export needs a fixed-size 1- or 3-channel image input with an input policy")
    if not policy.get("exif_transpose", True):
        raise ExportError("the input policy ignores the EXIF orientation, which browsers always apply; "
                          "the page could not feed the model what Predictor feeds it")


def default_quantization(model: keras.Model) -> str | None:
    """``"int8"`` for a compact preset's inference model (its preprocessing holds a
    ``ConvWhitening``), else ``None`` (float32)."""
    from nin_keras.layers import ConvWhitening

    preprocessing, _ = _split(model)
    return "int8" if any(isinstance(layer, ConvWhitening) for layer in preprocessing) else None


def serving_module(model: keras.Model) -> tuple[ServingModule, keras.layers.Layer | None]:
    """The serving module the web export converts, and the network's GAP head (or ``None``).

    For a global-average-pooling network the module serves ``probabilities`` and
    ``confidence_maps`` (``(batch, rows, cols, classes)``, the head's input) from the same
    layers and weights; other networks serve ``probabilities`` only.

    Args:
        model: the inference model (raw ``float32`` pixels in, preprocessing inside).
    """
    from nin_keras.models import confidence_map_model

    preprocessing, network = _split(model)
    try:
        maps_model = confidence_map_model(network)
    except ValueError:  # Maxout and fully connected baselines have no per-class maps
        return ServingModule(model), None
    images = keras.Input(tuple(model.inputs[0].shape[1:]), dtype="float32", name=INPUT_NAME)
    x = images
    for layer in preprocessing:
        x = layer(x)
    maps, probabilities = maps_model(x)
    both = keras.Model(images, [probabilities, maps], name=f"{model.name}_web")
    return ServingModule(both, (OUTPUT_NAME, MAPS_NAME)), network.get_layer("head")


def _split(model: keras.Model):
    from nin_keras.zoo.classifier import split_preprocessing

    return split_preprocessing(model)


def check_maps(model_path: Path, inputs: np.ndarray, head: keras.layers.Layer,
               atol: float = 1e-5) -> dict[str, Any]:
    """Check that the artifact's ``confidence_maps`` are the maps its ``probabilities`` come from:
    the Keras ``head`` layer applied to them gives the artifact's probabilities.

    Raises:
        ExportError: the maps are missing, mis-shaped or disagree beyond ``atol``.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    probabilities, maps = session.run([OUTPUT_NAME, MAPS_NAME], {INPUT_NAME: inputs[:16]})
    if maps.ndim != 4 or maps.shape[-1] != probabilities.shape[-1]:
        raise ExportError(f"confidence maps have shape {maps.shape}, expected (batch, rows, cols, "
                          f"{probabilities.shape[-1]})")
    from_maps = keras.ops.convert_to_numpy(head(maps))
    diff = float(np.abs(from_maps - probabilities).max())
    if not diff <= atol:
        raise ExportError(f"the head applied to the exported confidence maps differs from the "
                          f"exported probabilities by {diff:.3g} > {atol:g}")
    return {"shape": [None, *maps.shape[1:]], "head_max_abs_diff": diff}


def write_page(folder: Path, runtime: dict[str, Any], maps: dict[str, Any] | None,
               max_file_bytes: int = MAX_FILE_BYTES) -> dict[str, Any]:
    """Copy the page and the runtime into ``folder`` (which holds :data:`MODEL_FILE`); return the
    ``web`` section of the metadata.

    Args:
        folder: the export folder being written.
        runtime: :func:`find_runtime`'s answer.
        maps: :func:`check_maps`'s answer, or ``None`` for a network without maps.
        max_file_bytes: the page refuses image files above this size.
    """
    for name in PAGE_FILES:
        shutil.copyfile(_PAGE_DIR / name, folder / name)
    ort_dir = folder / "ort"
    ort_dir.mkdir()
    for name in RUNTIME_FILES:
        shutil.copyfile(runtime["dist"] / name, ort_dir / name)
    (ort_dir / "LICENSE.txt").write_text(
        f"{PACKAGE} {runtime['version']}, licence {runtime['license']} (from its package.json).\n"
        f"The files in this folder are copied unchanged from the npm package's dist/ folder.\n\n"
        + (_MIT if runtime["license"] == "MIT" else ""))
    files = [*PAGE_FILES, MODEL_FILE, *(f"ort/{name}" for name in RUNTIME_FILES)]
    return {"model": MODEL_FILE, "files": files, "max_file_bytes": int(max_file_bytes),
            "runtime": {"package": PACKAGE, "version": runtime["version"],
                        "license": runtime["license"], "script": f"ort/{RUNTIME_FILES[0]}",
                        "license_file": "ort/LICENSE.txt"},
            "outputs": {"probabilities": OUTPUT_NAME, "confidence_maps": maps and MAPS_NAME},
            "confidence_maps": maps}
