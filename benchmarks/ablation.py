"""Ablation of a recipe and the recipe search: what each ingredient gives, in short runs.

Each variant is a zoo recipe (``--recipe``, by default ``zoo/recipes/nin_cifar10_modern.json``)
with one ingredient removed, replaced or added, trained for ``--epochs`` epochs (the one-cycle
schedule compressed into them; twice as many for ``twice the schedule``) on ``--train`` images
drawn at random (seeded) from the recipe's train split, of which ``--validation`` are held out
(stratified, seeded): choices are made on that validation accuracy, never on the test split.
Each run is also measured on ``--test`` images drawn the same way from the test split (single
view and flip + 2-pixel translate TTA, reported beside, not selected on): the published (EMA,
where the variant has one) weights. Short runs rank the ingredients by what they give early in
training; the full run's figures are in the model card.

A variant that changes nothing the recipe builds (dropout 0.5 where the network already has it),
or an ingredient the recipe does not have (GCN + ZCA on Fashion-MNIST's or SVHN's recipes, a
second RandomErasing), does not apply to it: the search leaves it out and says why.

A later round of the search builds on the best so far: ``--on VARIANT ...`` makes those variants'
changes first, and each row then adds one more (``full recipe`` is that round's base).

Runs go one after another, or ``--parallel N`` at a time in child processes (one accelerator
shared: set ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` on JAX); ``--runs-dir`` keeps each run's
folder (per-epoch ``metrics.csv``, the log) instead of a temporary one. The backend is
``$KERAS_BACKEND``'s (``nin-keras train`` runs on TensorFlow and JAX).

Usage:
    python benchmarks/ablation.py                   # every variant -> results/ablation.json
    python benchmarks/ablation.py --quick           # two variants, 1 epoch on 512 images (smoke run)
    python benchmarks/ablation.py --on "per-channel standardization for GCN + ZCA" --result ablation_round2
    python benchmarks/ablation.py --recipe nin_fashion_mnist_long --epochs 60 --train 60000 \
        --validation 5000 --test 10000 --result ablation_fashion
    KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false python benchmarks/ablation.py \
        --epochs 36 --train 50000 --validation 5000 --test 10000 --parallel 3 --runs-dir runs/search \
        --checkpoint-every 0
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from nin_keras.io_utils import atomic_write  # noqa: E402

RECIPE = "nin_cifar10_modern"


class NotApplicable(ValueError):
    """A variant changes nothing in the recipe, or an ingredient the recipe does not have."""


def _requiring(holds: Callable[[dict], bool], what: str, edit: Callable[[dict], None]) -> Callable[[dict], None]:
    """``edit``, made only to a recipe for which ``holds`` (else ``NotApplicable`` naming ``what``)."""
    def checked(recipe: dict) -> None:
        if not holds(recipe):
            raise NotApplicable(f"the recipe has no {what}")
        edit(recipe)
    return checked


def _gcn_and_zca(recipe: dict) -> bool:
    """The paper's CIFAR preprocessing, which the whitening variants replace a part of (not SVHN's
    GCN + LCN)."""
    return [layer["class_name"] for layer in recipe["preprocessing"]] == ["GlobalContrastNormalization", "ZCAWhitening"]


def _without(key: str) -> Callable[[dict], None]:
    return lambda recipe: recipe.pop(key, None)


def _model_kwargs(**kwargs: Any) -> Callable[[dict], None]:
    """Set the network's ``kwargs``; ``NotApplicable`` when the network is already built with those
    values (a recipe that does not name ``dropout`` gets its builder's default)."""
    def edit(recipe: dict) -> None:
        import inspect

        from nin_keras.zoo.registry import get_model_entry

        entry = get_model_entry(recipe["model"]["name"])
        built = {name: parameter.default for name, parameter in inspect.signature(entry.builder).parameters.items()}
        built.update(entry.defaults, **recipe["model"]["kwargs"])
        if all(built.get(name) == value for name, value in kwargs.items()):
            raise NotApplicable(f"the network already has {kwargs}")
        recipe["model"]["kwargs"].update(kwargs)
    return edit


def _gcn_then(*layers: dict) -> Callable[[dict], None]:
    def edit(recipe: dict) -> None:
        recipe["preprocessing"] = [recipe["preprocessing"][0], *layers]  # GCN stays first
    return _requiring(_gcn_and_zca, "GCN + ZCA", edit)


def _preprocessing(*layers: dict) -> Callable[[dict], None]:
    return lambda recipe: recipe.update(preprocessing=list(layers))


def _augment_also(layer: dict) -> Callable[[dict], None]:
    """Add ``layer`` after the recipe's augmentation; ``NotApplicable`` when the recipe already has a
    layer of its class (a second RandomErasing would measure twice the erasing, not the variant)."""
    def edit(recipe: dict) -> None:
        if any(other["class_name"] == layer["class_name"] for other in recipe.get("augmentation", [])):
            raise NotApplicable(f"the recipe already has a {layer['class_name']} layer")
        recipe["augmentation"] = [*recipe.get("augmentation", []), layer]
    return edit


def _raw_augment(layer: dict) -> Callable[[dict], None]:
    return lambda recipe: recipe.update(raw_augmentation=[*recipe.get("raw_augmentation", []), layer])


def _mixing(**block: float) -> Callable[[dict], None]:
    return lambda recipe: recipe.update(mixing=block)


def _label_smoothing(value: float) -> Callable[[dict], None]:
    return lambda recipe: recipe["loss"].update(label_smoothing=value)


def _ema_decay(value: float) -> Callable[[dict], None]:
    return _requiring(lambda recipe: "ema" in recipe, "weight average (EMA)",
                      lambda recipe: recipe["ema"].update(decay=value))


CONV_WHITENING = {"module": "nin_keras.layers", "class_name": "ConvWhitening",
                  "config": {"kernel_size": 7, "padding": "symmetric", "filter_bias": 0.1},
                  "registered_name": "nin_keras>ConvWhitening"}
#: No standardization at all: the pixels scaled to [0, 1].
SCALED_PIXELS = {"module": "keras.layers", "class_name": "Rescaling", "config": {"scale": 1 / 255, "offset": 0.0},
                 "registered_name": None}
#: Per-channel standardization: Keras's own Normalization, fitted on the training images.
PER_CHANNEL = {"module": "keras.layers", "class_name": "Normalization", "config": {"axis": -1},
               "registered_name": None}
#: Cutout (DeVries & Taylor 2017) as Keras's RandomErasing after the crop and flip: on every image
#: (``factor`` [1, 1]: a single 1.0 would draw each image's probability from [0, 1], erasing about
#: half of them), a rectangle of half the height and width set to 0, the mean of whitened or
#: standardized pixels.
CUTOUT = {"module": "keras.layers", "class_name": "RandomErasing",
          "config": {"factor": [1.0, 1.0], "scale": [0.25, 0.25], "fill_value": 0.0}, "registered_name": None}
#: Cutout's smaller square, 8x8 pixels of 32x32 (Keras draws each side as ``sqrt(scale)`` of the
#: image's; 7x7 of Fashion-MNIST's 28x28): the size the fast CIFAR-10 training recipes (Page 2018's
#: 24-epoch DAWNBench ResNet) used.
CUTOUT_SMALL = {"module": "keras.layers", "class_name": "RandomErasing",
                "config": {"factor": [1.0, 1.0], "scale": [0.0625, 0.0625], "fill_value": 0.0},
                "registered_name": None}
#: Random erasing (Zhong et al. 2020) as Keras's RandomErasing: half the images, a rectangle of
#: 2-33 % of each side's square (Keras's ``scale`` is per side, squared), filled with 0.
RANDOM_ERASING = {"module": "keras.layers", "class_name": "RandomErasing",
                  "config": {"factor": [0.5, 0.5], "scale": [0.02, 0.33], "fill_value": 0.0},
                  "registered_name": None}
#: RandAugment (Cubuk et al. 2020) as Keras's RandAugment on the raw pixels, before GCN + ZCA: two
#: operations per batch (Keras draws them per batch, not per image) of magnitude up to 0.5.
RAND_AUGMENT = {"module": "keras.layers", "class_name": "RandAugment",
                "config": {"value_range": [0, 255], "num_ops": 2, "factor": 0.5}, "registered_name": None}

#: Variant name -> how it edits the recipe (None: the recipe as it is).
VARIANTS: dict[str, Callable[[dict], None] | None] = {
    "full recipe": None,
    "no batch norm": _model_kwargs(batch_norm=False),
    "no label smoothing": lambda recipe: recipe["loss"].update(label_smoothing=0.0),
    "no weight average (EMA)": _without("ema"),
    "no augmentation (translate + flip)": lambda recipe: recipe.update(augmentation=[]),
    "GCN only (no whitening)": _gcn_then(),
    "7x7 patch ZCA (ConvWhitening) for the dense ZCA": _gcn_then(CONV_WHITENING),
    "per-channel standardization for GCN + ZCA": _requiring(_gcn_and_zca, "GCN + ZCA", _preprocessing(PER_CHANNEL)),
    "cutout (RandomErasing, a quarter of the image)": _augment_also(CUTOUT),
    "cutout 8x8 (RandomErasing, a sixteenth of the image)": _augment_also(CUTOUT_SMALL),
    "random erasing (half the images, 0.02-0.33 of each side squared)": _augment_also(RANDOM_ERASING),
    "RandAugment (2 ops, factor 0.5) on raw pixels": _raw_augment(RAND_AUGMENT),
    "MixUp (alpha 0.2)": _mixing(mixup_alpha=0.2),
    "CutMix (alpha 1.0)": _mixing(cutmix_alpha=1.0),
    "MixUp 0.8 / CutMix 1.0, switch 0.5 (timm)": _mixing(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5),
    "label smoothing 0.2": _label_smoothing(0.2),
    "dropout 0.5": _model_kwargs(dropout=0.5),
    # Schedule length: issue 29's longer runs overfit without stronger augmentation; with it, they may not.
    "twice the schedule": lambda recipe: recipe.update(epochs=2 * recipe["epochs"]),
    "EMA decay 0.9999": _ema_decay(0.9999),
    "pixels / 255 only (no GCN, no whitening)": _preprocessing(SCALED_PIXELS),
    # The family member of the same recipe: maxout units in the mlpconvs (1.7x the parameters).
    "MIN (maxout mlpconvs, Chang & Chen 2015) for the NIN": _requiring(
        lambda recipe: recipe["model"]["name"] == "nin_cifar10", "CIFAR-10 NIN to swap for min_cifar10",
        lambda recipe: recipe["model"].update(name="min_cifar10")),
}


def _edited(base: dict, edit: Callable[[dict], None] | None) -> dict:
    """A copy of ``base`` with ``edit`` made; ``NotApplicable`` if the edit does not apply or
    changes nothing (two rows of the same recipe would only measure noise)."""
    recipe = copy.deepcopy(base)
    if edit:
        edit(recipe)
        if recipe == base:
            raise NotApplicable("it changes nothing in the recipe")
    return recipe


def why_not_applicable(base: dict, name: str) -> str | None:
    """Why variant ``name`` does not apply to recipe ``base``, or None when it does."""
    try:
        _edited(base, VARIANTS[name])
    except NotApplicable as err:
        return str(err)
    return None


def variant_recipe(base: dict, edit: Callable[[dict], None] | None, epochs: int, train: int, test: int,
                   validation: int = 0, checkpoint_every: int = 100) -> dict:
    """The short-run recipe of one variant.

    The run is the recipe compressed: the schedule spans ``epochs`` (the schedules are stated in
    fractions of the run; a variant that changes the recipe's length changes the run's in
    proportion), and so does the weight average: its horizon ``1 / (1 - decay)`` steps
    is scaled by the run's steps over the recipe's own, so that it averages the same fraction of
    the run (0.999 over the recipe's 36 full epochs is 0.98 over 10 epochs of 9,000 images).
    Without this a short run would publish an average still dominated by its first epochs.
    """
    from nin_keras.data.catalog import dataset_info

    recipe = _edited(base, edit)
    epochs = round(epochs * recipe["epochs"] / base["epochs"])
    if recipe.get("ema"):
        full_steps = base["epochs"] * dataset_info(base["dataset"]["name"]).splits["train"]
        short_steps = epochs * max(1, train - validation)
        rate = (1 - recipe["ema"]["decay"]) * full_steps / short_steps
        recipe["ema"] = {**recipe["ema"], "decay": round(1 - min(rate, 0.5), 6)}
    # Checkpoints inside epochs: a full-length run on a CPU outlasts a session, and a stopped
    # search resumes each variant where it was (``--runs-dir``).
    recipe.update(epochs=epochs, validation={"holdout": validation}, checkpoint_every_steps=checkpoint_every)
    recipe["dataset"] = {**recipe["dataset"], "train_examples": train, "test_examples": test, "subset_seed": 0}
    return recipe


def round_base(recipe: str, on: Sequence[str]) -> dict:
    """The recipe named ``recipe`` with the changes of the variants ``on`` made (``NotApplicable``
    if one does not apply): the ``full recipe`` row of a round."""
    from nin_keras.train import load_recipe

    base = load_recipe(recipe)
    for name in on:
        try:
            base = _edited(base, VARIANTS[name])
        except NotApplicable as err:
            raise NotApplicable(f"{name!r}: {err}") from None
    return base


def round_recipes(names: Sequence[str], on: Sequence[str], epochs: int, train: int, test: int,
                  validation: int, checkpoint_every: int = 100, recipe: str = RECIPE) -> dict[str, dict]:
    """One round of the search: ``recipe`` with the changes of the variants ``on`` made first, then
    each of ``names`` (one more change each) as a short run."""
    base = round_base(recipe, on)
    return {name: variant_recipe(base, VARIANTS[name], epochs, train, test, validation, checkpoint_every)
            for name in names}


def run_variant(name: str, recipe: dict, out: Path, data_dir: str | None) -> dict[str, Any]:
    """Train one variant in this process; its row (validation: the last epoch's, of the weights
    it publishes; test: single view and flip + translate TTA)."""
    import keras

    from nin_keras.data.arrays import load_arrays
    from nin_keras.evaluation import evaluate_model
    from nin_keras.train import train
    from nin_keras.zoo import ImageClassifier

    keras.utils.clear_session()
    result = train(recipe, out, data_dir=data_dir, verbose=0)
    last = result.history[-1] if result.history else {}
    images, labels = load_arrays(recipe["dataset"], "test", data_dir)
    tta = evaluate_model(ImageClassifier.from_preset(result.preset_dir), images, labels, tta="flip_translate")
    return {
        "variant": name,
        "val_accuracy": None if "val_accuracy" not in last else round(100 * last["val_accuracy"], 2),
        # Of the last epoch, augmented, dropout on: far below val_accuracy + the gap a full run
        # shows means the run is still learning, and regularizers can only look worse.
        "train_accuracy": None if "accuracy" not in last else round(100 * last["accuracy"], 2),
        "test_accuracy": round(100 * result.test_metrics["accuracy"], 2),
        "test_accuracy_tta": round(100 * tta["accuracy"], 2),
        "test_loss": round(result.test_metrics["loss"], 4),
        "epoch_seconds": round(sum(row["seconds"] for row in result.history), 1),
        "epoch_cpu_seconds": round(sum(row.get("cpu_seconds", 0.0) for row in result.history), 1),
        "backend": keras.backend.backend(),
        "resumed_from": result.resumed_from,  # the last start's checkpoint ({"epoch", "step"}) or None
    }


def _run_in_children(names: list[str], recipes: dict[str, dict], runs_dir: Path, parallel: int,
                     data_dir: str | None) -> list[dict[str, Any]]:
    """Each variant in a child process (``--worker``), ``parallel`` at a time; rows in ``names`` order.

    A search stopped part way (a session's end) continues where it was: a variant whose folder in
    ``runs_dir`` holds a finished run of the same recipe is not run again (its row is kept), and an
    unfinished one resumes from its run's last checkpoint. A folder of another recipe starts over.
    """
    pending, running, rows = list(names), [], {}
    for name in names:
        folder = runs_dir / _slug(name)
        if (folder / "row.json").is_file() and _same_recipe(folder, recipes[name]):
            rows[name] = json.loads((folder / "row.json").read_text())
            pending.remove(name)
            print(f"{name:<52} kept from {folder}", flush=True)
    while pending or running:
        while pending and len(running) < parallel:
            name = pending.pop(0)
            folder = runs_dir / _slug(name)
            if not _same_recipe(folder, recipes[name]):
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir(parents=True)
                with atomic_write(folder / "recipe.json") as tmp:  # a half-written one would never match
                    tmp.write_text(json.dumps(recipes[name], indent=1))
            command = [sys.executable, __file__, "--worker", name, "--worker-dir", str(folder)]
            command += ["--data-dir", data_dir] if data_dir else []
            log = open(folder / "log.txt", "a")
            running.append((name, folder, log, subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)))
        name, folder, log, process = running.pop(0)
        if process.wait() != 0:
            raise RuntimeError(f"variant {name!r} failed (exit {process.returncode}); see {folder / 'log.txt'}")
        log.close()
        rows[name] = json.loads((folder / "row.json").read_text())
        print(f"{name:<52} val {rows[name]['val_accuracy']}%  test {rows[name]['test_accuracy']:6.2f}%  "
              f"{rows[name]['epoch_seconds']:7.1f} s", flush=True)
    return [rows[name] for name in names]


def paired_difference(base_correct: np.ndarray, other_correct: np.ndarray) -> tuple[float, float, float]:
    """Difference in accuracy (points) of two models on the same images, and its 95% interval.

    Paired: only the images one model gets right and the other wrong count (``b``: the base's
    alone, ``c``: the other's alone), so two runs that agree on most of the held-out images are
    told apart by fewer images than two independent samples would need. The difference is
    ``(c - b) / n``; its standard error ``sqrt(b + c - (c - b)^2 / n) / n`` (the paired-proportions
    normal approximation); the interval ``difference +- 1.96`` of those.
    """
    base_correct, other_correct = np.asarray(base_correct, bool), np.asarray(other_correct, bool)
    n = len(base_correct)
    b = int(np.count_nonzero(base_correct & ~other_correct))
    c = int(np.count_nonzero(other_correct & ~base_correct))
    difference = (c - b) / n
    half_width = 1.96 * np.sqrt(max(b + c - (c - b) ** 2 / n, 0.0)) / n
    return tuple(round(100 * value, 2) for value in (difference, difference - half_width, difference + half_width))


def _validation_intervals(names: list[str], rows: list[dict], recipes: dict[str, dict], runs_dir: Path,
                          data_dir: str | None) -> None:
    """Each row's ``val_accuracy_difference_ci95``: the paired 95% interval of its validation
    difference to the full recipe, from the published weights of both runs on the held-out images
    (the variants change no data, so every run holds out the same ones)."""
    from nin_keras.evaluation import predict_probabilities
    from nin_keras.train.splits import training_arrays
    from nin_keras.zoo import ImageClassifier

    _, _, images, labels = training_arrays(recipes["full recipe"], data_dir)

    def correct(name: str) -> np.ndarray:
        classifier = ImageClassifier.from_preset(runs_dir / _slug(name) / "run" / "preset")
        return np.argmax(predict_probabilities(classifier, images), axis=-1) == labels

    base = correct("full recipe")
    for name, row in zip(names, rows):
        row["val_accuracy_difference_ci95"] = (None if name == "full recipe"
                                               else list(paired_difference(base, correct(name))[1:]))


def _same_recipe(folder: Path, recipe: dict) -> bool:
    return (folder / "recipe.json").is_file() and json.loads((folder / "recipe.json").read_text()) == recipe


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")[:60]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train", type=int, default=8000, help="training images (seeded random draw)")
    parser.add_argument("--validation", type=int, default=1000,
                        help="of those, held out for validation: the figure choices are made on")
    parser.add_argument("--test", type=int, default=5000, help="test images (seeded random draw)")
    parser.add_argument("--recipe", default=RECIPE,
                        help="the zoo recipe (name or .json file) the search varies (default %(default)s)")
    parser.add_argument("--variants", nargs="*",
                        help="names of VARIANTS to run (default: every one that applies to the recipe)")
    parser.add_argument("--data-dir", help="local data folder")
    parser.add_argument("--parallel", type=int, default=1, help="runs at a time, in child processes")
    parser.add_argument("--runs-dir", help="keep each run's folder here (default: temporary)")
    parser.add_argument("--checkpoint-every", type=int, default=100, metavar="STEPS",
                        help="checkpoint each run every STEPS steps, so a stopped search resumes inside a "
                             "variant (default %(default)s; 0: at epoch ends only, for an accelerator, "
                             "where a 36-epoch run takes minutes and saving often costs more)")
    parser.add_argument("--on", nargs="+", default=[], metavar="VARIANT",
                        help="a later round of the search: these variants' changes are made to the recipe "
                             "first, and each row changes one more ingredient of that")
    parser.add_argument("--result", default="ablation", help="result name (results/RESULT.json)")
    parser.add_argument("--quick", action="store_true", help="smoke run: two variants, 1 epoch, 512/500 images")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # a child: run this variant only
    parser.add_argument("--worker-dir", help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.worker:
        folder = Path(args.worker_dir)
        recipe = json.loads((folder / "recipe.json").read_text())
        row = run_variant(args.worker, recipe, folder / "run", args.data_dir)
        with atomic_write(folder / "row.json") as tmp:  # its presence means the run finished
            tmp.write_text(json.dumps(row))
        return 0
    names = [name for name in args.variants or list(VARIANTS) if name not in args.on]
    unknown = sorted(set(names + args.on) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    try:
        base = round_base(args.recipe, args.on)
    except NotApplicable as err:
        parser.error(f"--on: a variant does not apply to {args.recipe}: {err}")
    reasons = {name: why_not_applicable(base, name) for name in names}
    not_applicable = {name: reason for name, reason in reasons.items() if reason}
    if args.variants and not_applicable:
        parser.error(f"not applicable to {args.recipe}: {not_applicable}")
    for name, reason in not_applicable.items():
        print(f"{name:<52} left out: {reason}", flush=True)
    names = [name for name in names if name not in not_applicable]
    if args.quick:
        args.epochs, args.train, args.validation, args.test = 1, 512, 64, 500
        names = names if args.variants else names[:2]

    recipes = round_recipes(names, args.on, args.epochs, args.train, args.test, args.validation,
                            args.checkpoint_every, args.recipe)
    with tempfile.TemporaryDirectory() as scratch:
        runs_dir = Path(args.runs_dir or scratch)
        rows = _run_in_children(names, recipes, runs_dir, max(1, args.parallel), args.data_dir)
        if "full recipe" in names and args.validation:
            _validation_intervals(names, rows, recipes, runs_dir, args.data_dir)
    full = next((row for row in rows if row["variant"] == "full recipe"), None)
    for row in rows:
        for key in ("val_accuracy", "test_accuracy", "test_accuracy_tta"):
            row[f"{key}_difference"] = (None if full is None or row[key] is None or full[key] is None
                                        else round(row[key] - full[key], 2))
    data = base["dataset"].get("label", base["dataset"]["name"])
    config = {"recipe": args.recipe, "on": args.on, "epochs": args.epochs, "train_images": args.train,
              "validation_images": args.validation, "test_images": args.test, "parallel": args.parallel,
              "backend": os.environ.get("KERAS_BACKEND", "tensorflow"),
              "data": f"{data}, seeded random subsets (subset_seed 0)"}
    common.finish(
        args.result, rows, common.command_line(__file__, argv), config=config,
        title=f"Ablation of the {args.recipe} recipe{' with ' + ', '.join(args.on) if args.on else ''} (short runs)",
        notes=[f"{args.epochs} epochs on {args.train} training images ({args.validation} of them held out for "
               f"validation), measured on {args.test} test images (seeded random draws from {data}); one "
               "ingredient changed per row. Choose on val_accuracy (the last epoch's, of the "
               "published weights), never on the test columns. val_accuracy_difference_ci95: the 95% interval "
               "of the validation difference to the full recipe, paired on the same held-out images (a "
               "difference whose interval holds 0 is not told apart from noise by this validation set).",
               "epoch_seconds: summed wall time of the epochs (runs side by side share the machine); "
               "epoch_cpu_seconds: the process's CPU time."])
    return 0


if __name__ == "__main__":
    sys.exit(main())
