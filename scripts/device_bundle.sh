#!/usr/bin/env bash
# Prepares .device/ (ignored) for a run on the GPU machine the `device` tool lends some sessions
# (an H200 with JAX and no TensorFlow or Keras, Python 3.12, nothing reachable from it):
#
#   .device/whl/    the wheels it lacks: keras 3.15.1, namex, optree (cp312, manylinux)
#   .device/site/   the package in its installed layout (zoo/ as nin_keras/zoo/, export/ as
#                   nin_keras/export/), without the zoo's weights folders
#   .device/data/   cifar10-jpeg.tar.gz and mnist.npz from ../shared/datasets ($NIN_KERAS_DATA_DIR)
#
# and prints the command to give the tool, with `.device` in its carry. The tool sends the tracked
# working tree too, at most 64 MiB with what is carried, and zoo/weights alone is about 80 MB: the
# script therefore takes the weights folders out of the working tree with a sparse checkout (they
# stay in the index and in every commit; `git sparse-checkout disable` brings them back).
#
#   bash scripts/device_bundle.sh                   bundle, hide the weights, print the command
#   bash scripts/device_bundle.sh --restore         bring zoo/weights back into the working tree
#   bash scripts/device_bundle.sh --check-here      run the bundled code here on a tiny budget
#                                                   (.venv-jax: JAX, no TensorFlow), as a dry run
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=.device
case "${1:-}" in
  --restore) git sparse-checkout disable; echo "device_bundle: zoo/weights restored"; exit 0 ;;
  ""|--check-here) ;;
  *) echo "usage: bash scripts/device_bundle.sh [--restore|--check-here]" >&2; exit 2 ;;
esac
# .device/ is in .gitignore: it never travels as part of the working tree, only as carry.
data_dir=${NIN_KERAS_DATA_DIR:-../shared/datasets}

# The package as pip would install it: the pyproject package-dir mapping, done by hand, because a
# built wheel carries the weights.
rm -rf "$bundle/site"
mkdir -p "$bundle/site" "$bundle/whl" "$bundle/data"
cp -r nin_keras "$bundle/site/nin_keras"
cp -r zoo "$bundle/site/nin_keras/zoo"
cp -r export "$bundle/site/nin_keras/export"
find "$bundle/site/nin_keras/zoo/weights" -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
rm -rf "$bundle/site/nin_keras/zoo/runs"
find "$bundle/site" -name __pycache__ -type d -prune -exec rm -rf {} +

for name in cifar10-jpeg.tar.gz mnist.npz; do
  [ -f "$bundle/data/$name" ] || cp "$data_dir/$name" "$bundle/data/$name"
done

if [ "${1:-}" = --check-here ]; then
  echo "device_bundle: the bundled package on a 1-epoch, 512-image search, KERAS_BACKEND=jax (.venv-jax)"
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
  PYTHONPATH="$bundle/site" KERAS_BACKEND=jax NIN_KERAS_DATA_DIR="$bundle/data" \
    NIN_KERAS_BENCH_RESULTS="$out" .venv-jax/bin/python benchmarks/ablation.py --quick --runs-dir "$out/search"
  python3 -c "import json, sys; rows = json.load(open(sys.argv[1]))['rows']; print('device_bundle: rows', [(r['variant'], r['val_accuracy']) for r in rows])" "$out/ablation.json"
  exit 0
fi

if ! ls "$bundle"/whl/keras-3.15.1-*.whl >/dev/null 2>&1; then
  echo "device_bundle: downloading keras 3.15.1, namex, optree wheels for CPython 3.12"
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d "$bundle/whl" keras==3.15.1 namex optree
fi

git sparse-checkout set --no-cone '/*' '!/zoo/weights/*/'
echo "device_bundle: zoo/weights/*/ left the working tree (bash scripts/device_bundle.sh --restore brings them back)"
du -sh "$bundle" | sed 's/^/device_bundle: carried /'
cat <<'EOF'
device_bundle: give the device tool carry [".device"] and a command like:
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .device/whl/*.whl &&
  export PYTHONPATH=/tmp/site:$PWD/.device/site KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false
  NIN_KERAS_DATA_DIR=$PWD/.device/data NIN_KERAS_BENCH_RESULTS=$OUT PYTHONUNBUFFERED=1 &&
  python3 benchmarks/ablation.py --epochs 36 --train 50000 --validation 5000 --test 10000
  --parallel 3 --runs-dir $OUT/search --checkpoint-every 0 2>&1 | tee $OUT/log
(files come back at most 2 folders down: $OUT/search/<run>/metrics.csv does)
EOF
