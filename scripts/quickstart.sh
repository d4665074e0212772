#!/usr/bin/env bash
# Quick start: set up what the evaluation needs (scripts/setup.sh: a venv with the package and its
# dependencies, one line per step; no test extras, browser or web runtime), then evaluate the
# default pretrained NIN CIFAR-10 (its per-channel standardization inside, shipped in zoo/weights/)
# on the local CIFAR-10 (JPEG copy) test split, next to the paper's figure. Extra arguments go to
# `nin-keras eval` (e.g. --limit 1000 for a faster look, --data-dir DIR for data elsewhere).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
echo "quickstart: nin-keras eval nin_cifar10 --data cifar10 --split test $*"
exec nin-keras eval nin_cifar10 --data cifar10 --split test "$@"
