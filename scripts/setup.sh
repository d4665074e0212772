#!/usr/bin/env bash
# Idempotent set-up: a virtual environment in .venv with nin-keras and its dev extras,
# and Debian's Fashion-MNIST files (the only data set this project installs; the others
# are read from ../shared or from tfds when online).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
. .venv/bin/activate
if ! python -c "import nin_keras, tensorflow, onnxruntime, openvino, tf2onnx, ai_edge_litert, hypothesis, scipy" 2>/dev/null; then
  python -m pip install -q --upgrade pip
  python -m pip install -q -e ".[dev]"
fi
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
    || echo "note: could not install dataset-fashion-mnist; Fashion-MNIST tests will be skipped" >&2
fi
