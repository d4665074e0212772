"""A published weight set of a zoo model (a *tag*), as the weights index records it: its files'
sha256 and sizes, the measured metrics, and which tag is a name's default (``best_tag``)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping


@dataclasses.dataclass(frozen=True)
class WeightsFile:
    """One file of a published preset: its name in the preset folder, sha256 and size in bytes."""

    name: str
    sha256: str
    size: int


@dataclasses.dataclass(frozen=True)
class PretrainedConfig:
    """A published weight set (one *tag*) of a zoo model, as the weights index records it.

    Args:
        tag: the part after the dot in ``<model>.<tag>``.
        files: the preset's ``config.json`` and ``metadata.json`` with sha256 and size (the
            metadata lists the weights files' own).
        size: total bytes of the preset folder.
        dataset: data set name the metrics were measured on (``nin_keras.data`` names).
        preprocessing: one-line summary; the full spec and fitted statistics are in the preset.
        metrics: measured numbers, percentages, e.g. ``{"test_error": 0.52}``.
        command: the command that measured ``metrics``.
        paper_error: the paper's test error (%) these weights compare with (with augmentation
            when their recipe augments), None if the paper gives none.
        license: license of the weights.
        source: where the weights come from (training recipe and run, or original release).
        evaluated_on: what the metrics were measured on, in words (e.g. "CIFAR-10 (JPEG copy) test split").
        urls: base URLs of the preset folder; empty because the project has no public host
            (``$NIN_KERAS_MIRROR`` supplies one).
    """

    tag: str
    files: tuple[WeightsFile, ...]
    size: int
    dataset: str
    preprocessing: str
    metrics: Mapping[str, float]
    command: str
    paper_error: float | None
    license: str
    source: str
    evaluated_on: str = ""
    urls: tuple[str, ...] = ()

    @property
    def file_hashes(self) -> dict[str, str]:
        return {f.name: f.sha256 for f in self.files}

    @property
    def file_sizes(self) -> dict[str, int]:
        return {f.name: f.size for f in self.files}


def best_tag(configs: Mapping[str, PretrainedConfig]) -> str | None:
    """The tag with the highest measured test accuracy (the first on a tie, or when none records
    one); None without weight sets."""
    accuracy = {tag: cfg.metrics.get("test_accuracy", -math.inf) for tag, cfg in configs.items()}
    return max(accuracy, key=accuracy.__getitem__, default=None)
