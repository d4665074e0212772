"""Decoding image files in worker processes: images/s of ``nin_keras.data.decode_pool`` by workers.

Decodes the first 5,000 JPEG files of the CIFAR-10 JPEG copy's test split (read into memory
first, so the archive's gzip stream is not timed) at their own size, as the copy is read for
training, with ``workers=1`` (this process) and with 2 and the library's default number of worker
processes. Every pass starts a new pool, as every read of a folder does, so the workers' start is
included. The arrays are checked to be the same, byte for byte, for every number of workers.

This is its own script, not a row of ``pipeline.py``: a worker process imports the script that
started it, and ``pipeline.py`` imports TensorFlow, which the workers would then import too.

Usage:
    python benchmarks/decode.py           # writes results/decode.json
    python benchmarks/decode.py --quick   # 300 random 12x12 JPEGs (a smoke run)
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)

from nin_keras.data.archive import iter_files  # noqa: E402
from nin_keras.data.decode_pool import decode_files, default_workers  # noqa: E402
from nin_keras.data.locate import data_dirs  # noqa: E402

ARCHIVE = "cifar10-jpeg.tar.gz"


def jpeg_files(count: int, quick: bool, data_dir: str | None) -> tuple[list[bytes], str]:
    """``count`` JPEG files and where they come from: the first of the JPEG copy's test split, or
    (``quick``) random 12x12 images encoded by Pillow."""
    if quick:
        from PIL import Image

        rng, files = np.random.default_rng(0), []
        for _ in range(count):
            buffer = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(buffer, "JPEG")
            files.append(buffer.getvalue())
        return files, "random 12x12 RGB JPEGs (--quick)"
    archive = next((folder / ARCHIVE for folder in data_dirs(data_dir) if (folder / ARCHIVE).is_file()), None)
    if archive is None:
        raise SystemExit(f"{ARCHIVE} is in none of {[str(d) for d in data_dirs(data_dir)]}")
    files: list[bytes] = []
    for _, data in iter_files(archive, lambda path: path.parts[0] == "test" and len(files) < count):
        files.append(data)
    return files, f"the first {len(files):,} test-split JPEGs of {archive.name} (32x32 RGB)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 random 12x12 JPEGs, one timed pass")
    parser.add_argument("--images", type=int, default=5000, help="JPEG files decoded per pass")
    parser.add_argument("--data-dir", help="local data folder (default: $NIN_KERAS_DATA_DIR or ../shared/datasets)")
    args = parser.parse_args(argv)
    files, source = jpeg_files(300 if args.quick else args.images, args.quick, args.data_dir)
    items = [(i, data, f"file {i}") for i, data in enumerate(files)]
    repeats = 1 if args.quick else 3
    rows, decoded = [], {}
    for workers in sorted({1, 2, default_workers()}):
        load_before = os.getloadavg()[0]
        timing = common.time_call(lambda: decoded.__setitem__(workers, list(decode_files(items, None, workers=workers))),
                                  repeats=repeats, warmup=1)
        rows.append({"workers": workers, "images": len(files),
                     "images_per_s": round(len(files) / timing["median_s"], 1),
                     "median_s": round(timing["median_s"], 3), "min_s": round(timing["min_s"], 3),
                     "load_avg_1m": f"{load_before:.2f}, {os.getloadavg()[0]:.2f}", "status": "ok"})
        print(rows[-1], flush=True)
    reference = np.stack([image for _, image in decoded[1]])
    identical = all(np.stack([image for _, image in results]).tobytes() == reference.tobytes()
                    for results in decoded.values())
    by_workers = {row["workers"]: row["images_per_s"] for row in rows}
    summary = {
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "default_workers": default_workers(),
        "workers_2_over_1": round(by_workers[2] / by_workers[1], 2),
        "identical_arrays": identical,
        "quick": "yes" if args.quick else "no",
    }
    common.finish(
        "decode", rows, common.command_line(__file__, argv),
        title="Image decoding in worker processes (decode_pool)",
        columns=["workers", "images", "images_per_s", "median_s", "min_s", "load_avg_1m", "status"],
        summary=summary,
        notes=[f"Data: {source}, decoded at their own size (no input policy), as the JPEG copy is read for training.",
               f"images/s = images / median of {repeats} timed passes after one warm-up pass; each pass starts a new "
               "pool of worker processes (forkserver), so their start is included; load_avg_1m = [before, after].",
               "identical_arrays: the decoded arrays of every number of workers equal workers=1's, byte for byte."])
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
