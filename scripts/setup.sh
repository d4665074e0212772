#!/usr/bin/env bash
# Idempotent set-up: a virtual environment in .venv with nin-keras and its dev extras,
# Debian's Fashion-MNIST files (the only data set this project installs; the others
# are read from ../shared or from tfds when online), and for the web export and its browser
# test (tests/test_web.py) Debian's Chromium with its ChromeDriver and the npm package
# onnxruntime-web at the version pinned in web/package.json (into web/node_modules).
# Reinstalls when pyproject.toml changes (its hash is kept in .venv/.install-stamp); prints
# one line per step. What cannot be installed is reported, and the tests needing it skip.
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

if { [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; } && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "setup: apt-get install chromium chromium-driver (the web page's browser test)"
  log=$(mktemp)
  if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) >"$log" 2>&1; then
    echo "setup: $(/usr/bin/chromium --version 2>/dev/null) installed"
  else
    echo "setup: could not install chromium/chromium-driver; the browser tests will be skipped. apt-get said:" >&2
    tail -n 20 "$log" >&2
  fi
  rm -f "$log"
fi

# The runtime the web export copies; npm ci installs exactly what web/package-lock.json pins
# (--ignore-scripts: the runtime's files need no build step).
pinned=$(python3 -c 'import json; print(json.load(open("web/package.json"))["dependencies"]["onnxruntime-web"])')
installed=$(python3 -c 'import json; print(json.load(open("web/node_modules/onnxruntime-web/package.json"))["version"])' 2>/dev/null || true)
if [ "$installed" = "$pinned" ]; then
  echo "setup: onnxruntime-web $pinned is installed in web/node_modules"
elif command -v npm >/dev/null; then
  echo "setup: npm ci (onnxruntime-web $pinned into web/node_modules)"
  log=$(mktemp)
  if npm ci --ignore-scripts --no-audit --no-fund --prefix web >"$log" 2>&1; then
    echo "setup: onnxruntime-web $pinned installed"
  else
    echo "setup: npm ci failed; the web export and its tests will be skipped. npm said:" >&2
    tail -n 20 "$log" >&2
  fi
  rm -f "$log"
else
  echo "setup: no npm; the web export (onnxruntime-web $pinned) and its browser tests will be skipped" >&2
fi
