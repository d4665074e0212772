"""Two weight sets on the same images: each one's accuracy, the difference and its paired 95% interval.

How a model card tells a new run from the weights it would replace: on a recipe's held-out
validation images (the split choices are made on, ``training_arrays`` of ``--recipe``: the same
seeded, stratified hold-out every run of that recipe family leaves out) and on the test split
(reported beside, never chosen on). Paired: only the images one model gets right and the other
wrong count (``paired_difference`` of ``ablation.py``), so two networks that agree on most images
are told apart by far fewer images than two independent accuracies would need.

Both presets must have held out those images (their metadata's training recipe draws the same
hold-out as ``--recipe``), else the comparison is refused for the validation split.

Not part of ``run_all.py``: each result compares two presets a card names, under its own
``--result`` name.

Usage:
    python benchmarks/paired.py nin_fashion_mnist.fast nin_fashion_mnist.long \\
        --recipe nin_fashion_mnist_long --result paired_fashion_long
    python benchmarks/paired.py --quick   # nin_fashion_mnist.fast against .long, 500 images a split, nothing written
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from ablation import paired_difference  # noqa: E402

QUICK = ("nin_fashion_mnist.fast", "nin_fashion_mnist.long", "nin_fashion_mnist_long")


def split_arrays(recipe: dict, splits: Sequence[str], data_dir: str | None,
                 limit: int | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{split: (images, labels)}``: ``validation`` is the recipe's held-out images, any other name
    that split of its data set; the first ``limit`` of each when given."""
    from nin_keras.data.arrays import load_arrays
    from nin_keras.errors import ArgumentError
    from nin_keras.train.splits import training_arrays

    arrays = {}
    for split in splits:
        if split == "validation":
            validation = recipe.get("validation") or {}
            if validation.get("split") == "test" or not (validation.get("holdout") or validation.get("split")):
                # A recipe that measures the test split every epoch has nothing to choose on.
                raise ArgumentError(f"recipe {recipe['name']!r} holds out no validation images "
                                    f"(its validation: {validation or 'none'}); compare on --splits test")
            _, _, images, labels = training_arrays(recipe, data_dir)
        else:
            images, labels = load_arrays(recipe["dataset"], split, data_dir)
        arrays[split] = (images[:limit], labels[:limit])
    return arrays


def _hold_out(recipe: Mapping[str, Any]) -> tuple:
    """What decides a recipe's held-out images (``training_arrays``): its data draw, validation
    setting and seed; not where the data is read from or what it is called."""
    dataset = {key: value for key, value in recipe["dataset"].items() if key not in ("source", "label")}
    return dataset, recipe.get("validation") or {}, recipe["seed"]


def check_held_out(recipe: Mapping[str, Any], models: Mapping[str, Any]) -> None:
    """``ArgumentError`` unless each model's training recipe (its preset's metadata) held out the
    images ``recipe`` holds out: otherwise some "validation" images were training images for it."""
    from nin_keras.errors import ArgumentError

    for name, model in models.items():
        trained = model.metadata.get("recipe")
        if trained is None or _hold_out(trained) != _hold_out(recipe):
            seen = "no training recipe recorded" if trained is None else f"trained by {trained['name']!r}"
            raise ArgumentError(f"{name} ({seen}) did not hold out the validation images of recipe "
                                f"{recipe['name']!r} (data, validation and seed differ); compare on --splits test")


def compare(models: Mapping[str, Any], arrays: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[dict]:
    """One row per split: the two ``models``' accuracy (percent; ``{base: model, other: model}``),
    ``other - base`` and its interval, and the images each alone gets right."""
    from nin_keras.evaluation import predict_probabilities

    base, other = models
    rows = []
    for split, (images, labels) in arrays.items():
        right = {name: predict_probabilities(model, images).argmax(-1) == labels for name, model in models.items()}
        difference, low, high = paired_difference(right[base], right[other])
        rows.append({
            "split": split, "images": len(labels),
            "base_accuracy": round(100 * float(right[base].mean()), 2),
            "other_accuracy": round(100 * float(right[other].mean()), 2),
            "difference": float(difference), "ci95": [float(low), float(high)],
            "base_only_right": int(np.count_nonzero(right[base] & ~right[other])),
            "other_only_right": int(np.count_nonzero(right[other] & ~right[base])),
        })
        print(rows[-1], flush=True)
    return rows


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", nargs="?", help="the weights in place: a preset name (name.tag) or folder")
    parser.add_argument("other", nargs="?", help="the weights compared with them")
    parser.add_argument("--recipe", help="the recipe whose held-out images are the validation split "
                                         "(its data set is the test split's)")
    parser.add_argument("--splits", nargs="+", default=["validation", "test"])
    parser.add_argument("--data-dir", help="local data folder")
    parser.add_argument("--result", default="paired", help="result name (results/RESULT.json)")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK[0]} against {QUICK[1]} on 500 images of each split of {QUICK[2]}, "
                             "nothing written")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from nin_keras.train import load_recipe

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quick:
        args.base, args.other, args.recipe = args.base or QUICK[0], args.other or QUICK[1], args.recipe or QUICK[2]
    if not (args.base and args.other and args.recipe):
        parser.error("give the two weight sets and --recipe (or --quick)")
    if args.base == args.other:
        parser.error(f"{args.base} against itself: give two different weight sets")
    from nin_keras.errors import ArgumentError
    from nin_keras.zoo import ImageClassifier

    recipe = load_recipe(args.recipe)
    models = {name: ImageClassifier.from_preset(name) for name in (args.base, args.other)}
    try:
        if "validation" in args.splits:
            check_held_out(recipe, models)
        arrays = split_arrays(recipe, args.splits, args.data_dir, 500 if args.quick else None)
    except ArgumentError as err:
        parser.error(str(err))
    rows = compare(models, arrays)
    if args.quick:
        print("quick run: nothing written")
        return 0
    data = recipe["dataset"].get("label", recipe["dataset"]["name"])
    common.finish(
        args.result, rows, common.command_line(__file__, argv),
        title=f"{args.other} against {args.base}, paired on the same images",
        config={"base": args.base, "other": args.other, "recipe": args.recipe, "data": data},
        columns=["split", "images", "base_accuracy", "other_accuracy", "difference", "ci95",
                 "base_only_right", "other_only_right"],
        notes=[f"Data set: {data}. validation: the {args.recipe} recipe's held-out training images (seeded, "
               "stratified), what choices are made on; test: the test split, reported beside. Accuracy in "
               "percent, single view; difference: other - base in points, with its paired 95% interval (normal "
               "approximation over the images only one of the two gets right: base_only_right, "
               "other_only_right)."])
    return 0


if __name__ == "__main__":
    sys.exit(main())
