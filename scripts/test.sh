#!/usr/bin/env bash
# Sets up for the tests (scripts/setup.sh --test: the dev extras, the browser and the web runtime)
# and runs the test suite; extra arguments go to pytest.
# Without arguments (what CI runs) the JAX backend check follows (scripts/test_jax.sh);
# the exit status is non-zero if either part failed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
. .venv/bin/activate
status=0
python -m pytest -q "$@" || status=$?
if [ $# -eq 0 ]; then
  bash scripts/test_jax.sh || status=$?
fi
exit "$status"
