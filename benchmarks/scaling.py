"""How NIN CIFAR-10 training time per step/epoch and memory grow with batch size and image size.

The network is fully convolutional (the head averages over any map size), so the same
``nin_cifar10`` trains on 32, 64 or 128 px images; its cost per image grows with the pixel count.
Each configuration runs in its own subprocess so that its peak resident memory (``ru_maxrss``)
is its own. Rows report:

- ``step_s``: median time of a real training step (``train_on_batch``, SGD with momentum, the
  baseline settings of ``train_step.py``), warm-up excluded;
- ``epoch_s``: ``ceil(50,000 / batch) × step_s``, the estimated time of one CIFAR-sized epoch at
  that image size (the input pipeline excluded);
- ``peak_rss_mb``: the process's peak resident memory; ``training_rss_mb``: how much the training
  steps added to the peak reached after importing TensorFlow and building the model.

Usage:
    python benchmarks/scaling.py          # batch 32..256 at 32 px, 64 and 128 px at batch 32
    python benchmarks/scaling.py --quick  # tiny smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from train_step import RESULT_PREFIX, TimeBudget, compile_for_training, random_batch  # noqa: E402

EPOCH_IMAGES = 50_000
COLUMNS = [
    "batch_size", "image_size", "forward_macs_per_image", "step_s", "images_per_s", "epoch_s",
    "peak_rss_mb", "training_rss_mb", "load_avg_1m", "status",
]


def configurations(batch_sizes: Sequence[int], image_sizes: Sequence[int], base_batch: int,
                   base_image: int) -> list[tuple[int, int]]:
    """The batch sweep at ``base_image`` px, then the image-size sweep at ``base_batch``, no repeats."""
    configs = [(batch, base_image) for batch in batch_sizes]
    configs += [(base_batch, size) for size in image_sizes if (base_batch, size) not in configs]
    return configs


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(config: dict[str, Any]) -> dict[str, Any]:
    """Time training steps of one (batch size, image size) and report time and memory."""
    from nin_keras.models import count_flops, nin_cifar10
    from train_step import load_avg

    shape = (config["image_size"], config["image_size"], 3)
    model = compile_for_training(nin_cifar10(input_shape=shape), jit_compile=False)
    images, labels = random_batch(config["batch_size"], shape)
    before_training = peak_rss_mb()
    for _ in range(config["warmup"]):
        model.train_on_batch(images, labels)
    times = []
    load_before = load_avg()
    for _ in range(config["steps"]):
        start = time.perf_counter()
        model.train_on_batch(images, labels)
        times.append(time.perf_counter() - start)
    step = statistics.median(times)
    return {
        "forward_macs_per_image": count_flops(model),
        "step_s": step,
        "step_s_min": min(times),
        "step_s_max": max(times),
        "images_per_s": config["batch_size"] / step,
        "epoch_s": math.ceil(EPOCH_IMAGES / config["batch_size"]) * step,
        "peak_rss_mb": peak_rss_mb(),
        "training_rss_mb": peak_rss_mb() - before_training,
        "load_avg_1m": [load_before, load_avg()],
        "status": "ok",
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke run")
    parser.add_argument("--batch-sizes", type=int, nargs="+", help="batch sweep at the base image size")
    parser.add_argument("--image-sizes", type=int, nargs="+", help="image-size sweep at the base batch size")
    parser.add_argument("--steps", type=int, help="timed steps per configuration (median reported)")
    parser.add_argument("--budget-s", type=float, help="skip the remaining configurations once this many "
                        "seconds would likely be exceeded")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(RESULT_PREFIX + json.dumps(worker(json.loads(args.worker))), flush=True)
        return 0
    if args.quick:
        batch_sizes, image_sizes, steps = args.batch_sizes or [2, 4], args.image_sizes or [32, 48], args.steps or 2
    else:
        batch_sizes, image_sizes, steps = args.batch_sizes or [32, 64, 128, 256], args.image_sizes or [32, 64, 128], args.steps or 3
    for name, values in (("--batch-sizes", batch_sizes), ("--image-sizes", image_sizes)):
        if any(v < 1 for v in values):
            parser.error(f"{name} must be positive, got {values}")
    budget = TimeBudget(args.budget_s)
    rows = []
    for batch, size in configurations(batch_sizes, image_sizes, batch_sizes[0], image_sizes[0]):
        config = {"batch_size": batch, "image_size": size, "warmup": 1, "steps": steps}
        print(f"[scaling] {config}", file=sys.stderr, flush=True)
        result = budget.run(Path(__file__), config)
        print(f"[scaling] {json.dumps(result)}", file=sys.stderr, flush=True)
        rows.append({"batch_size": batch, "image_size": size, "steps": steps, **result})
    common.finish(
        "scaling", rows, common.command_line(__file__, argv),
        title="Scaling: NIN CIFAR-10 training step time, epoch estimate and memory vs batch and image size",
        columns=COLUMNS,
        quick=args.quick,
        notes=(
            f"step_s = median train_on_batch time (warm-up excluded); epoch_s = ceil({EPOCH_IMAGES} / batch) "
            "x step_s; peak_rss_mb = the subprocess's peak resident memory (TensorFlow itself included); "
            "training_rss_mb = peak growth during the training steps. The image-size sweep uses the first "
            "batch size."
        ),
    )
    return common.exit_status(rows)


if __name__ == "__main__":
    sys.exit(main())
