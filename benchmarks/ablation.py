"""Ablation of the modern CIFAR-10 recipe: what each ingredient gives, in short runs.

Each variant is ``zoo/recipes/nin_cifar10_modern.json`` with one ingredient removed or replaced,
trained for ``--epochs`` epochs (the one-cycle schedule compressed into them) on ``--train``
images drawn at random (seeded) from the CIFAR-10 (JPEG copy) train split, and measured on
``--test`` images drawn the same way from its test split: the published (EMA, where the variant
has one) weights, single view. Short runs rank the ingredients by what they give early in
training; the full run's figures are in the model card.

Usage:
    python benchmarks/ablation.py                   # every variant -> results/ablation.json
    python benchmarks/ablation.py --quick           # two variants, 1 epoch on 512 images (smoke run)
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

RECIPE = "nin_cifar10_modern"


def _without(key: str) -> Callable[[dict], None]:
    return lambda recipe: recipe.pop(key, None)


def _model_kwargs(**kwargs: Any) -> Callable[[dict], None]:
    return lambda recipe: recipe["model"]["kwargs"].update(kwargs)


def _gcn_then(*layers: dict) -> Callable[[dict], None]:
    def edit(recipe: dict) -> None:
        recipe["preprocessing"] = [recipe["preprocessing"][0], *layers]  # GCN stays first
    return edit


CONV_WHITENING = {"module": "nin_keras.layers", "class_name": "ConvWhitening",
                  "config": {"kernel_size": 7, "padding": "symmetric", "filter_bias": 0.1},
                  "registered_name": "nin_keras>ConvWhitening"}

#: Variant name -> how it edits the recipe (None: the recipe as it is).
VARIANTS: dict[str, Callable[[dict], None] | None] = {
    "full recipe": None,
    "no batch norm": _model_kwargs(batch_norm=False),
    "no label smoothing": lambda recipe: recipe["loss"].update(label_smoothing=0.0),
    "no weight average (EMA)": _without("ema"),
    "no augmentation (translate + flip)": lambda recipe: recipe.update(augmentation=[]),
    "GCN only (no whitening)": _gcn_then(),
    "7x7 patch ZCA (ConvWhitening) for the dense ZCA": _gcn_then(CONV_WHITENING),
}


def variant_recipe(base: dict, edit: Callable[[dict], None] | None, epochs: int, train: int, test: int) -> dict:
    """The short-run recipe of one variant."""
    recipe = copy.deepcopy(base)
    if edit:
        edit(recipe)
    recipe.update(epochs=epochs, validation={"holdout": 0}, checkpoint_every_steps=0)
    recipe["dataset"] = {**recipe["dataset"], "train_examples": train, "test_examples": test, "subset_seed": 0}
    return recipe


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train", type=int, default=8000, help="training images (seeded random draw)")
    parser.add_argument("--test", type=int, default=5000, help="test images (seeded random draw)")
    parser.add_argument("--variants", nargs="*", help="names of VARIANTS to run (default: all)")
    parser.add_argument("--data-dir", help="local data folder")
    parser.add_argument("--quick", action="store_true", help="smoke run: two variants, 1 epoch, 512/500 images")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.train, args.test = 1, 512, 500
        args.variants = args.variants or list(VARIANTS)[:2]
    names = args.variants or list(VARIANTS)
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")

    import keras

    from nin_keras.train import load_recipe, train

    base = load_recipe(RECIPE)
    rows = []
    for name in names:
        recipe = variant_recipe(base, VARIANTS[name], args.epochs, args.train, args.test)
        keras.utils.clear_session()
        with tempfile.TemporaryDirectory() as out:
            result = train(recipe, out, data_dir=args.data_dir, verbose=0)
        rows.append({
            "variant": name,
            "test_accuracy": round(100 * result.test_metrics["accuracy"], 2),
            "test_loss": round(result.test_metrics["loss"], 4),
            "epoch_seconds": round(sum(row["seconds"] for row in result.history), 1),
            "epoch_cpu_seconds": round(sum(row.get("cpu_seconds", 0.0) for row in result.history), 1),
        })
        print(f"{name:<52} {rows[-1]['test_accuracy']:6.2f}%  {rows[-1]['epoch_seconds']:7.1f} s", flush=True)
    full = next((row["test_accuracy"] for row in rows if row["variant"] == "full recipe"), None)
    for row in rows:
        row["difference_to_full"] = None if full is None else round(row["test_accuracy"] - full, 2)
    config = {"recipe": RECIPE, "epochs": args.epochs, "train_images": args.train, "test_images": args.test,
              "data": "CIFAR-10 (JPEG copy), seeded random subsets (subset_seed 0)"}
    common.finish(
        "ablation", rows, common.command_line(__file__, argv), config=config,
        title=f"Ablation of the {RECIPE} recipe (short runs)",
        notes=[f"{args.epochs} epochs on {args.train} training images, measured on {args.test} test images "
               "(seeded random draws from the CIFAR-10 JPEG copy); one ingredient changed per row.",
               "epoch_seconds: summed wall time of the epochs; epoch_cpu_seconds: the process's CPU time."])
    return 0


if __name__ == "__main__":
    sys.exit(main())
