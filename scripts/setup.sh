#!/usr/bin/env bash
# Idempotent set-up: a virtual environment in .venv with nin-keras and its dev extras,
# and Debian's Fashion-MNIST files (the only data set this project installs; the others
# are read from ../shared or from tfds when online). Reinstalls when pyproject.toml changes
# (its hash is kept in .venv/.install-stamp); prints one line per step.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
ensure_venv .venv "pyproject.toml sha256 $(pyproject_hash)" "-e .[dev]"

if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "setup: apt-get install dataset-fashion-mnist (Debian's Fashion-MNIST files)"
  log=$(mktemp)
  if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) >"$log" 2>&1; then
    echo "setup: Fashion-MNIST installed in /usr/share/datasets/fashion-mnist"
  else
    echo "setup: could not install dataset-fashion-mnist; Fashion-MNIST tests will be skipped. apt-get said:" >&2
    tail -n 20 "$log" >&2
  fi
  rm -f "$log"
fi
