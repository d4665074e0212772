"""The ``nin-keras`` command: thin argparse subcommands over the library.

Each subcommand is a ``_cmd_<name>(args) -> int`` function registered in ``build_parser``;
library imports happen inside them so ``nin-keras --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nin-keras", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Subcommands register themselves below, one block each.
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
