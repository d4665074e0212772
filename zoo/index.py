"""The index of published weight sets (``zoo/weights/index.json``): what the registry trusts.

Each published preset folder ``zoo/weights/<model>.<tag>/`` has one index record, generated from
the folder itself (never written by hand)::

    "nin_cifar10.caffe": {
      "files": {"config.json": {"sha256": ..., "size": ...}, "metadata.json": {...}},
      "size": <bytes of the whole folder>,
      "dataset", "preprocessing", "metrics", "command", "paper_error", "license", "source",
      "evaluated_on": copied from metadata.json
    }

The sha256 of ``metadata.json`` is the trust anchor: the metadata lists the size and sha256 of
every weights file, so a copy (bundled, cached or downloaded) is checked file by file against a
chain that starts here. The other fields are the metadata's, copied so that listing the zoo and
its model cards needs no weights file. ``python -m nin_keras.zoo.publish`` writes the folders and
regenerates this file; a test checks that it matches the folders.

This module reads JSON and hashes files only (no Keras, no TensorFlow).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nin_keras.errors import PresetError
from nin_keras.io_utils import atomic_write, read_json, sha256_file
from nin_keras.zoo.pretrained import PretrainedConfig, WeightsFile
from nin_keras.zoo.registry import split_name

FORMAT = "nin_keras.weights_index"
FORMAT_VERSION = 1
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
INDEX_FILE = WEIGHTS_DIR / "index.json"
#: The files of a preset folder the index vouches for; the metadata vouches for the rest.
ANCHOR_FILES = ("config.json", "metadata.json")
_COPIED_FIELDS = ("dataset", "command", "paper_error", "license", "source", "evaluated_on")


def _one_line(value: Any) -> str:
    """A metadata value as one line of text (structured values as compact JSON)."""
    if value is None or isinstance(value, str):
        return value or ""
    return json.dumps(value, sort_keys=True)


def _file_record(path: Path) -> dict[str, Any]:
    return {"sha256": sha256_file(path), "size": path.stat().st_size}


def index_record(folder: str | Path) -> dict[str, Any]:
    """The index record of one preset folder, computed from its files.

    Raises:
        PresetError: the folder lacks an anchor file or its metadata lacks ``files``.
    """
    folder = Path(folder)
    for name in ANCHOR_FILES:
        if not (folder / name).is_file():
            raise PresetError(f"Preset {folder} has no {name}.")
    metadata = read_json(folder / "metadata.json", error=PresetError)
    listed = metadata.get("files") if isinstance(metadata, dict) else None
    if not isinstance(listed, dict):
        raise PresetError(f"{folder / 'metadata.json'} lists no 'files'.")
    anchors = {name: _file_record(folder / name) for name in ANCHOR_FILES}
    steps = [spec.get("class_name", "?") for spec in metadata.get("preprocessing", []) if isinstance(spec, dict)]
    return {
        "files": anchors,
        "size": sum(f["size"] for f in anchors.values()) + sum(int(f["size"]) for f in listed.values()),
        "preprocessing": " → ".join(steps) or "none",
        "metrics": {k: v for k, v in (metadata.get("metrics") or {}).items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)},
        **{key: metadata.get(key) if key == "paper_error" else _one_line(metadata.get(key)) for key in _COPIED_FIELDS},
    }


def build_index(weights_dir: str | Path = WEIGHTS_DIR) -> dict[str, Any]:
    """The index of every ``<model>.<tag>`` folder in ``weights_dir``, sorted by name."""
    weights_dir = Path(weights_dir)
    folders = sorted(p for p in weights_dir.iterdir() if p.is_dir() and "." in p.name and not p.name.startswith("."))
    return {"format": FORMAT, "format_version": FORMAT_VERSION,
            "presets": {folder.name: index_record(folder) for folder in folders}}


def write_index(weights_dir: str | Path = WEIGHTS_DIR) -> Path:
    """Regenerate ``weights_dir/index.json`` from the folders (atomically); return its path."""
    path = Path(weights_dir) / INDEX_FILE.name
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(build_index(weights_dir), indent=2, ensure_ascii=False) + "\n")
    return path


def read_index(path: str | Path = INDEX_FILE) -> dict[str, Mapping[str, Any]]:
    """``{"<model>.<tag>": record}`` from an index file.

    Raises:
        PresetError: the file is missing, not JSON, or not an index of this format.
    """
    path = Path(path)
    if not path.is_file():
        raise PresetError(f"The weights index {path} is missing; regenerate it with python -m nin_keras.zoo.publish --index.")
    data = read_json(path, error=PresetError)
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("format_version") != FORMAT_VERSION:
        raise PresetError(f"{path} is not a {FORMAT} file of version {FORMAT_VERSION}.")
    presets = data.get("presets")
    if not isinstance(presets, dict):
        raise PresetError(f"{path}: 'presets' must be an object.")
    return presets


def pretrained_config(tag: str, record: Mapping[str, Any]) -> PretrainedConfig:
    """The registry's ``PretrainedConfig`` of one index record."""
    return PretrainedConfig(
        tag=tag,
        files=tuple(WeightsFile(name, info["sha256"], info["size"]) for name, info in record["files"].items()),
        size=int(record["size"]),
        dataset=record["dataset"],
        preprocessing=record["preprocessing"],
        metrics=dict(record["metrics"]),
        command=record["command"],
        paper_error=record["paper_error"],
        license=record["license"],
        source=record["source"],
        evaluated_on=record["evaluated_on"],
    )


def published(model: str, presets: Mapping[str, Mapping[str, Any]]) -> list[PretrainedConfig]:
    """The weight sets that ``presets`` (``read_index()``) lists for zoo model ``model``, in tag order."""
    configs = []
    for preset, record in presets.items():
        base, tag = split_name(preset)
        if base == model and tag:
            configs.append(pretrained_config(tag, record))
    return configs
