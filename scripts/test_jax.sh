#!/usr/bin/env bash
# The Keras 3 multi-backend check: layers, architectures, presets and training on JAX, in .venv-jax, a venv
# with the package's dependencies but no TensorFlow. TensorFlow's outputs of the same cases are
# written first with the main .venv (tests_jax/tf_reference.py) and compared within 1e-4.
# Runs tests_jax/ plus tests/test_layers.py and tests/test_models.py (its fresh-process .keras
# round trip excepted: it rebuilds every model, minutes on JAX). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. scripts/venv.sh
# The package's own dependencies minus TensorFlow (read from pyproject.toml), JAX and pytest;
# the package itself with --no-deps (it lists TensorFlow).
deps=$(python3 -c 'import tomllib; print(" ".join(d for d in tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"] if not d.startswith("tensorflow")))')
ensure_venv .venv-jax "jax: $deps jax pytest; pyproject.toml sha256 $(pyproject_hash)" \
  "$deps jax pytest" "--no-deps -e ."

reference=$(mktemp -d)
trap 'rm -rf "$reference"' EXIT
echo "test_jax: TensorFlow reference outputs (.venv)"
KERAS_BACKEND=tensorflow .venv/bin/python tests_jax/tf_reference.py "$reference/tf_reference.npz"
echo "test_jax: pytest on KERAS_BACKEND=jax (.venv-jax, no TensorFlow)"
KERAS_BACKEND=jax NIN_KERAS_TF_REFERENCE="$reference/tf_reference.npz" \
  .venv-jax/bin/python -m pytest -q tests_jax tests/test_layers.py tests/test_models.py \
  --deselect tests/test_models.py::test_save_load_round_trip_in_fresh_process "$@"
