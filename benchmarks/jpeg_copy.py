"""What limits a model on the CIFAR-10 JPEG copy: the copy's JPEG settings, and what one more
such pass costs the published weights.

Four measurements, in one run:

- every file of ``cifar10-jpeg.tar.gz`` is opened (headers only, no pixels) and counted by split,
  JPEG quality and chroma subsampling. The quality is the one at which Pillow's encoder (libjpeg's
  tables scaled by quality, as every IJG-based encoder does) writes the same quantization tables as
  the file; files whose tables match no quality are counted as "custom";
- each preset of ``--models`` is evaluated on the whole test split as stored and after one more
  encode-decode at each quality of ``--passes`` (default: the copy's own, the commonest of the
  survey, and 50), at the copy's chroma subsampling. A pass at the copy's own settings meets the
  same block grid and the same tables, so it changes little: it bounds how sensitive the weights
  are to a repeat of that loss, not what the first pass cost (that needs the original images,
  which no source here has). A coarser pass shows the slope. A pass at the copy's own settings on
  a block grid moved by ``--grid-shift`` pixels (default 4, half a luma block) is a second
  generation of the copy's own loss: new block boundaries, so new rounding, the nearest measurable
  stand-in for what the first pass cost;
- for each preset, how much of a pass's change its preprocessing passes on: the energy of the
  change (pass minus stored) relative to the images' own energy (about their mean), on the raw
  pixels and after the preset's preprocessing layers. An affine per-channel map leaves the ratio as
  it is; ZCA whitening scales each direction by about one over its standard deviation, and the
  high-frequency directions JPEG quantizes are the ones of smallest variance;
- each preset's test accuracy with the colour channels reversed (BGR, Caffe's own order): what a
  wrong channel order would cost, so that a low score on the copy is not mistaken for an import
  that kept the authors' BGR input.

Usage:
    python benchmarks/jpeg_copy.py                 # writes results/jpeg_copy.json
    python benchmarks/jpeg_copy.py --models        # the survey alone
    python benchmarks/jpeg_copy.py --quick         # the survey of the first 500 test files (a smoke run)
"""

from __future__ import annotations

import argparse
import collections
import io
import itertools
import sys
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image, JpegImagePlugin

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)

from nin_keras.data.archive import iter_files  # noqa: E402
from nin_keras.data.locate import data_dirs  # noqa: E402

ARCHIVE = "cifar10-jpeg.tar.gz"
# The authors' weights (trained on the original images) and the two recipes trained on the copy:
# GCN + ZCA and per-channel standardization.
MODELS = ("nin_cifar10.caffe", "nin_cifar10.modern", "nin_cifar10.standardized")
#: Pillow's names of ``JpegImagePlugin.get_sampling``'s answers.
SUBSAMPLING = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}


def _tables(image: Image.Image) -> tuple:
    return tuple(tuple(image.quantization[index]) for index in sorted(image.quantization))


def encoder_qualities() -> dict[tuple, int]:
    """Quantization tables -> the quality at which Pillow's encoder writes them (1-100)."""
    qualities = {}
    colour = Image.fromarray(np.zeros((16, 16, 3), np.uint8))
    for quality in range(1, 101):
        buffer = io.BytesIO()
        colour.save(buffer, "JPEG", quality=quality)
        qualities.setdefault(_tables(Image.open(buffer)), quality)
    return qualities


def survey(files: Iterable[tuple[PurePosixPath, bytes]]) -> list[dict[str, Any]]:
    """One row per (split, quality, subsampling) of the JPEG files, with its count."""
    qualities = encoder_qualities()
    counts: collections.Counter = collections.Counter()
    for path, data in files:
        image = Image.open(io.BytesIO(data), formats=["JPEG"])
        quality = qualities.get(_tables(image), "custom")
        subsampling = SUBSAMPLING.get(JpegImagePlugin.get_sampling(image), "other")
        counts[(path.parts[0], quality, subsampling, image.size)] += 1
    return [{"kind": "files", "split": split, "quality": quality, "subsampling": subsampling,
             "size": list(size), "files": count}
            for (split, quality, subsampling, size), count in sorted(counts.items(), key=str)]


def reencoded(images: np.ndarray, quality: int, subsampling: str, grid_shift: int = 0) -> np.ndarray:
    """``images`` (N, H, W, 3) uint8 after one JPEG encode-decode by Pillow at these settings.

    With ``grid_shift`` s > 0 each image is encoded with s mirrored rows and columns added above
    and to its left, and cut back out after decoding: the encoder's 8×8 blocks (16×16 for 4:2:0
    chroma) then start s pixels off the image's own grid."""
    height, width = images.shape[1:3]
    out = np.empty_like(images)
    for index, image in enumerate(images):
        if grid_shift:
            image = np.pad(image, ((grid_shift, 0), (grid_shift, 0), (0, 0)), mode="symmetric")
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=quality, subsampling=subsampling)
        out[index] = np.asarray(Image.open(buffer).convert("RGB"))[grid_shift:grid_shift + height,
                                                                   grid_shift:grid_shift + width]
    return out


def change_energy(images: np.ndarray, changed: np.ndarray, layers: Sequence[Any]) -> tuple[float, float]:
    """Energy of ``changed - images`` over the energy of ``images`` about their mean: on the raw
    pixels, and after ``layers`` (a preset's preprocessing, applied in order)."""

    def ratio(before: np.ndarray, after: np.ndarray) -> float:
        return float(np.sum((after - before) ** 2) / np.sum((before - before.mean(axis=0)) ** 2))

    def preprocess(batch: np.ndarray) -> np.ndarray:
        out = batch.astype("float32")
        for layer in layers:
            out = np.asarray(layer(out, training=False), dtype="float64")
        return out

    return ratio(images.astype("float64"), changed.astype("float64")), ratio(preprocess(images), preprocess(changed))


def _energy_fields(images: np.ndarray, passes: dict[str, np.ndarray], layers: Sequence[Any]) -> dict[str, float]:
    """``change_energy`` of each pass, raw and after ``layers``, as a row's percentage fields."""
    fields = {}
    for pass_name, again in passes.items():
        raw, preprocessed = change_energy(images, again, layers)
        fields[f"change_energy_{pass_name}_raw_%"] = round(100 * raw, 3)
        fields[f"change_energy_{pass_name}_preprocessed_%"] = round(100 * preprocessed, 3)
    return fields


def pass_names(qualities: Sequence[int], copy_quality: int, grid_shift: int) -> dict[str, tuple[int, int]]:
    """The extra passes by the name their fields carry: ``q<quality>`` on the copy's grid, and
    ``q<copy's quality>_grid<shift>`` on the moved one (none when ``grid_shift`` is 0)."""
    passes = {f"q{quality}": (quality, 0) for quality in qualities}
    if grid_shift:
        passes[f"q{copy_quality}_grid{grid_shift}"] = (copy_quality, grid_shift)
    return passes


def model_rows(names: Sequence[str], passes: dict[str, tuple[int, int]], subsampling: str,
               data_dir: str | None) -> list[dict]:
    """Each preset's test accuracy as stored, with the channels reversed and after each of
    ``passes`` (name -> quality, grid shift), with the change's energy through its preprocessing;
    then per-channel standardization's energy."""
    import keras

    from nin_keras.data.arrays import load_arrays
    from nin_keras.evaluation import evaluate_model
    from nin_keras.zoo import ImageClassifier

    images, labels = load_arrays({"name": "cifar10", "source": "auto"}, "test", data_dir)
    reencodings = {name: reencoded(images, quality, subsampling, shift) for name, (quality, shift) in passes.items()}
    rows = []
    for name in names:
        classifier = ImageClassifier.from_preset(name)
        stored = 100 * evaluate_model(classifier, images, labels)["accuracy"]
        row = {"kind": "model", "preset": name, "test_images": len(labels), "accuracy_as_stored": round(stored, 2)}
        reversed_order = 100 * evaluate_model(classifier, images[..., ::-1], labels)["accuracy"]
        row["accuracy_channels_reversed"] = round(reversed_order, 2)
        for pass_name, again in reencodings.items():
            accuracy = 100 * evaluate_model(classifier, again, labels)["accuracy"]
            row[f"accuracy_after_a_{pass_name}_pass"] = round(accuracy, 2)
            row[f"difference_{pass_name}"] = round(accuracy - stored, 2)
        rows.append({**row, **_energy_fields(images, reencodings, classifier.preprocessing)})
        print(name, rows[-1], flush=True)
    # The reference no published preset has: Keras's per-channel Normalization, fitted on these images.
    per_channel = keras.layers.Normalization(axis=-1)
    per_channel.adapt(images.astype("float32"))
    rows.append({"kind": "preprocessing", "preset": "per-channel standardization (keras.layers.Normalization)",
                 **_energy_fields(images, reencodings, [per_channel])})
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS), help="presets to evaluate (none: survey only)")
    parser.add_argument("--passes", nargs="*", type=int, help="qualities of the extra pass (default: the copy's, and 50)")
    parser.add_argument("--grid-shift", type=int, default=4,
                        help="pixels the block grid of the copy-quality pass is moved by (0: no such pass)")
    parser.add_argument("--data-dir", help="local data folder")
    parser.add_argument("--quick", action="store_true", help="smoke run: the first 500 test files, no models")
    args = parser.parse_args(argv)
    if args.grid_shift < 0:
        parser.error(f"--grid-shift must be 0 or more pixels, got {args.grid_shift}")
    archive = next((folder / ARCHIVE for folder in data_dirs(args.data_dir) if (folder / ARCHIVE).is_file()), None)
    if archive is None:
        raise SystemExit(f"{ARCHIVE} is in none of {[str(d) for d in data_dirs(args.data_dir)]}")
    files = iter_files(archive)
    if args.quick:
        args.models = []
        files = itertools.islice(iter_files(archive, lambda path: path.parts[0] == "test"), 500)
    rows = survey(files)
    commonest = max(rows, key=lambda row: row["files"])
    for row in rows:
        print(f"{row['split']:<6} quality {row['quality']!s:<7} {row['subsampling']:<6} {row['files']:>6,} files")
    if args.models:
        qualities = args.passes or [commonest["quality"], 50]
        passes = pass_names(qualities, commonest["quality"], args.grid_shift)
        rows += model_rows(args.models, passes, commonest["subsampling"], args.data_dir)
    common.finish(
        "jpeg_copy", rows, common.command_line(__file__, argv),
        config={"archive": archive.name, "extra_pass_subsampling": commonest["subsampling"]},
        title="What the CIFAR-10 JPEG copy is, and what one more JPEG pass costs",
        notes=["quality: the one at which Pillow's encoder writes the file's quantization tables; "
               "subsampling: the chroma sampling of the file (4:2:0 keeps colour at half the width and height).",
               "accuracy_after_a_qN_pass: the test split encoded and decoded once more by Pillow at quality N "
               "and the copy's subsampling; single view, whole test split. A pass at the copy's own quality "
               "is nearly idempotent (same grid, same tables), so it cannot show what the first pass cost.",
               "accuracy_after_a_qN_gridS_pass: the same at the copy's quality N on a block grid moved by S pixels "
               "(S mirrored rows and columns added above and left for the encoder, cut off after decoding): a "
               "second generation of the copy's own loss at new block boundaries.",
               "accuracy_channels_reversed: the stored test split fed as BGR instead of RGB.",
               "change_energy_qN_raw_% / _preprocessed_%: the energy of (pass - stored) over the stored images' "
               "energy about their mean, on the raw pixels and after the row's preprocessing."])
    return 0


if __name__ == "__main__":
    sys.exit(main())
