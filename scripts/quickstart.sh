#!/usr/bin/env bash
# Quick start: set up (scripts/setup.sh), then evaluate the pretrained NIN CIFAR-10 (the authors'
# Caffe weights with their GCN + ZCA preprocessing, shipped in zoo/weights/) on the local
# CIFAR-10 (JPEG copy) test split, next to the paper's figure. Extra arguments go to `nin-keras eval`
# (e.g. --limit 1000 for a faster look, --data-dir DIR for data elsewhere).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
exec nin-keras eval nin_cifar10 --data cifar10 --split test "$@"
