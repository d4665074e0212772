"""The ``nin-keras`` command: thin argparse subcommands over the library.

Each subcommand is a ``_cmd_<name>(args) -> int`` function registered in ``build_parser``;
library imports happen inside them so ``nin-keras --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence


def _cmd_bench(args: argparse.Namespace) -> int:
    """Run ``benchmarks/run_all.py`` of the source checkout this package is installed from."""
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "run_all.py"
    if not script.exists():
        print(f"nin-keras bench: {script} not found; the benchmarks ship with the source "
              "repository, not the installed package", file=sys.stderr)
        return 2
    extra = ["--quick"] if args.quick else []
    if args.only:
        extra += ["--only", *args.only]
    if args.results_dir:
        extra += ["--results-dir", args.results_dir]
    return subprocess.run([sys.executable, str(script), *extra]).returncode


def _train_command(args: argparse.Namespace) -> str:
    """The command line that reproduces this run, recorded in the metrics and preset metadata."""
    import shlex

    words = ["nin-keras", "train", args.recipe]
    for flag in ("epochs", "out", "strategy", "data_dir", "max_steps", "checkpoint_every"):
        value = getattr(args, flag)
        if value is not None:
            words += [f"--{flag.replace('_', '-')}", str(value)]
    return shlex.join(words)


def _cmd_train(args: argparse.Namespace) -> int:
    """Train a recipe; rerunning the same command resumes from the last checkpoint."""
    from nin_keras.train import load_recipe, train, with_overrides

    recipe = with_overrides(load_recipe(args.recipe), epochs=args.epochs)
    result = train(
        recipe,
        args.out or f"runs/{recipe['name']}",
        strategy=args.strategy or "default",
        data_dir=args.data_dir,
        max_steps=args.max_steps,
        checkpoint_every_steps=args.checkpoint_every,
        command=_train_command(args),
        verbose=0 if args.quiet else 1,
    )
    if result.preset_dir is not None:
        print(f"preset: {result.preset_dir}")
    print(f"weights digest: {result.weights_digest}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    """Print accuracy, loss and the paper's number for a preset on a data set split."""
    import json

    from nin_keras.train import evaluate_preset

    r = evaluate_preset(args.preset, args.data, args.split, args.data_dir, limit=args.limit, batch_size=args.batch_size)
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    paper = "n/a" if r["paper_error"] is None else f"{r['paper_error']:.2f}%"
    published = (r["published"] or {}).get("test_error")
    published = "n/a" if published is None else f"{published:.2f}%"
    print(f"{r['preset']} on {r['dataset']} {r['split']} ({r['examples']} images)")
    print(f"  accuracy {100 * r['accuracy']:.2f}%   error {r['error_percent']:.2f}%   loss {r['loss']:.4f}")
    print(f"  paper error {paper}   published error {published}")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    """List zoo models with parameters, multiply-adds, paper error and published weight tags."""
    from nin_keras.zoo import cards, list_models

    names = list_models(args.pattern, pretrained=True if args.pretrained else None)
    if not names:
        which = (f" matching {args.pattern!r}" if args.pattern else "") + (" with published weights" if args.pretrained else "")
        print(f"no zoo model{which}", file=sys.stderr)
        return 1
    print(f"{'model':<24}{'dataset':<15}{'params':>12}{'MACs':>10}{'paper':>8}  weights")
    for name in names:
        s = cards.summarize(name)
        paper = "—" if s.paper_error is None else f"{s.paper_error:.2f}%"
        weights = ", ".join(f"{s.name}.{tag}" for tag in s.tags) or "none"
        print(f"{s.name:<24}{s.dataset:<15}{s.params:>12,}{s.flops / 1e6:>9.1f}M{paper:>8}  {weights}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nin-keras", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Subcommands register themselves below, one block each.

    bench = sub.add_parser("bench", help="run the benchmarks and regenerate benchmarks/README.md")
    bench.add_argument("--quick", action="store_true", help="tiny settings, results in a temporary folder")
    bench.add_argument("--only", nargs="+", metavar="NAME", help="train_step, scaling, pipeline, inference")
    bench.add_argument("--results-dir", help="where the JSON results and README go")
    bench.set_defaults(func=_cmd_bench)

    train = sub.add_parser("train", help="train a recipe (zoo name or .json); rerun the same command to resume")
    train.add_argument("recipe", help="recipe name in zoo/recipes (e.g. nin_mnist_fast) or a path to a .json")
    train.add_argument("--epochs", type=int, help="override the recipe's epochs")
    train.add_argument("--out", help="run folder (checkpoint, metrics, preset); default runs/<recipe>")
    train.add_argument("--strategy", choices=("default", "mirrored", "multiworker"),
                       help="tf.distribute strategy; multiworker reads TF_CONFIG (default: one device)")
    train.add_argument("--data-dir", help="local data folder (else $NIN_KERAS_DATA_DIR, ../shared/datasets, ...)")
    train.add_argument("--max-steps", type=int, help="stop after this many optimizer steps in total")
    train.add_argument("--checkpoint-every", type=int, help="also checkpoint every N steps inside an epoch (0: off)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=_cmd_train)

    evaluate = sub.add_parser("eval", help="accuracy and loss of a preset next to the paper's number")
    evaluate.add_argument("preset", help="zoo name (nin_mnist, nin_cifar10.caffe), preset folder or URL")
    evaluate.add_argument("--data", help="data set name (default: the preset's)")
    evaluate.add_argument("--split", default="test", help="split to evaluate (default: test)")
    evaluate.add_argument("--data-dir", help="local data folder")
    evaluate.add_argument("--limit", type=int, help="evaluate the first N images only")
    evaluate.add_argument("--batch-size", type=int, default=500)
    evaluate.add_argument("--json", action="store_true", help="print the result as JSON")
    evaluate.set_defaults(func=_cmd_eval)
    models = sub.add_parser("models", help="list zoo models: parameters, multiply-adds, paper error, weight tags")
    models.add_argument("pattern", nargs="?", help="name pattern (nin_cifar*) or substring (mnist)")
    models.add_argument("--pretrained", action="store_true", help="only models with published weights")
    models.set_defaults(func=_cmd_models)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
