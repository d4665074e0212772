#!/usr/bin/env bash
# Idempotent set-up, one line per step.
#
#   bash scripts/setup.sh          the quick start's needs: a virtual environment in .venv with
#                                  nin-keras and its dependencies (no extras)
#   bash scripts/setup.sh --test   what the test suite needs (scripts/test.sh): nin-keras with its
#                                  dev extras (exporters, tensorflow-datasets, pytest, selenium),
#                                  Debian's Fashion-MNIST files (the only data set this project
#                                  installs; the others are read from ../shared or from tfds), and
#                                  for the web export and its browser test (tests/test_web.py)
#                                  Debian's Chromium with its ChromeDriver and the npm package
#                                  onnxruntime-web at the version pinned in web/package.json (into
#                                  web/node_modules)
#
# Reinstalls when pyproject.toml changes (its hash is kept in .venv/.install-stamp); a venv set up
# with --test also serves the quick start. What cannot be installed is reported, and the tests
# needing it skip.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  "") test_setup=false ;;
  --test) test_setup=true ;;
  *) echo "usage: bash scripts/setup.sh [--test]" >&2; exit 2 ;;
esac
. scripts/venv.sh
test_key="pyproject.toml sha256 $(pyproject_hash)"
if $test_setup; then
  ensure_venv .venv "$test_key" "-e .[dev]"
elif [ "$(cat .venv/.install-stamp 2>/dev/null)" = "$test_key" ]; then
  echo "setup: .venv is up to date (with the test extras)"
else
  ensure_venv .venv "$test_key (no extras)" "-e ."
fi
$test_setup || exit 0

# apt_install WHAT PACKAGES...: install Debian packages as root, or say what will be skipped.
apt_install() {
  local what=$1 log
  shift
  command -v apt-get >/dev/null && [ "$(id -u)" = 0 ] || {
    echo "setup: cannot apt-get install $* (needs root and apt-get); $what will be skipped" >&2
    return 0
  }
  echo "setup: apt-get install $* ($what)"
  log=$(mktemp)
  if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@") >"$log" 2>&1; then
    echo "setup: $* installed"
  else
    echo "setup: could not install $*; $what will be skipped. apt-get said:" >&2
    tail -n 20 "$log" >&2
  fi
  rm -f "$log"
}

if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  apt_install "the Fashion-MNIST tests" dataset-fashion-mnist
fi
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  apt_install "the web page's browser tests" chromium chromium-driver
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
