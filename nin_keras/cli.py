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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nin-keras", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Subcommands register themselves below, one block each.

    bench = sub.add_parser("bench", help="run the benchmarks and regenerate benchmarks/README.md")
    bench.add_argument("--quick", action="store_true", help="tiny settings, results in a temporary folder")
    bench.add_argument("--only", nargs="+", metavar="NAME", help="train_step, scaling, pipeline, inference")
    bench.add_argument("--results-dir", help="where the JSON results and README go")
    bench.set_defaults(func=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
