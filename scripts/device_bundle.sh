#!/usr/bin/env bash
# Prepares .device/ (ignored) for a run on the GPU machine the `device` tool lends some sessions
# (an H200 with JAX and no TensorFlow or Keras, Python 3.12, nothing reachable from it):
#
#   .device/whl/    the wheels it lacks: keras 3.15.1, namex, optree (cp312, manylinux)
#   .device/site/   the package in its installed layout (zoo/ as nin_keras/zoo/, export/ as
#                   nin_keras/export/), without the zoo's weights folders
#   .device/data/   cifar10-jpeg.tar.gz from ../shared/datasets ($NIN_KERAS_DATA_DIR) and
#                   fashion-mnist/ from /usr/share/datasets (Debian's dataset-fashion-mnist): the
#                   two data sets issue 29's search still runs on (MNIST's goal is reached, and its
#                   11 MB would not fit beside them)
#
# and prints the command to give the tool, with `.device` in its carry. The tool sends the tracked
# working tree too, at most 64 MiB with what is carried, and zoo/weights alone is about 80 MB and
# the training runs' checkpoints and presets in zoo/runs about 45: the script takes both out of the
# working tree with a sparse checkout (they stay in the index and in every commit; `git
# sparse-checkout disable` brings them back), and says how much will travel (a modified or
# untracked file there stays and travels). It refuses while a training run is going: hiding its
# folder's files would unlink what that run is writing.
#
#   bash scripts/device_bundle.sh                   bundle, hide weights and checkpoints, print the command
#   bash scripts/device_bundle.sh --restore         bring them back
#   bash scripts/device_bundle.sh --check-here      run the bundled code here on a tiny budget
#                                                   (.venv-jax: JAX, no TensorFlow), as a dry run
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=.device
case "${1:-}" in
  --restore) git sparse-checkout disable; echo "device_bundle: zoo/weights and the runs' checkpoints restored"; exit 0 ;;
  ""|--check-here) ;;
  *) echo "usage: bash scripts/device_bundle.sh [--restore|--check-here]" >&2; exit 2 ;;
esac
# `nin-keras train`, `python -m nin_keras train`, the scripts' background runs.
training='nin[-_]keras[^ ]* train( |$)'
if [ "${1:-}" = "" ] && { ! command -v pgrep >/dev/null || pgrep -f "$training" >/dev/null; }; then
  echo "device_bundle: a training run may be going (pgrep -f '$training', or no pgrep to tell); hiding" \
       "zoo/runs' checkpoints would unlink what it writes: stop it at a checkpoint, commit its folder, then bundle" >&2
  exit 1
fi
# .device/ is in .gitignore: it never travels as part of the working tree, only as carry.
data_dir=${NIN_KERAS_DATA_DIR:-../shared/datasets}
fashion_dir=${NIN_KERAS_FASHION_DIR:-/usr/share/datasets/fashion-mnist}
# What the sparse checkout takes out of the working tree (a trailing / : a folder's files).
hidden=('zoo/weights/*/' 'zoo/runs/*/checkpoint.npz' 'zoo/runs/*/preset/')

# What the tool will send: the working tree's tracked and not-ignored files, less the unmodified
# ones the sparse checkout hides, and the carried .device. Over 64 MiB the tool refuses the call.
check_size() {
  local travelling
  travelling=$(python3 - "$bundle" "${hidden[@]}" <<'PY'
import fnmatch, os, subprocess, sys
def git(*args):
    return [p for p in subprocess.run(["git", *args], capture_output=True, check=True).stdout.decode().split("\0") if p]
listed = set(git("ls-files", "-z", "--cached", "--others", "--exclude-standard"))
changed = {line[3:] for line in git("status", "--porcelain", "-z", "--untracked-files=all")}
patterns = [pattern + "*" if pattern.endswith("/") else pattern for pattern in sys.argv[2:]]
def hidden(path):
    return path not in changed and any(fnmatch.fnmatch(path, pattern) for pattern in patterns)
tree = sum(os.path.getsize(p) for p in listed if not hidden(p) and os.path.isfile(p))
carried = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(sys.argv[1]) for f in files)
print(tree + carried)
PY
  )
  echo "device_bundle: $((travelling / 1024 / 1024)) MiB will travel (the tool's limit: 64 MiB)"
  if [ "$travelling" -gt $((64 * 1024 * 1024)) ]; then
    echo "device_bundle: too much to travel; the largest tracked files: git ls-files | xargs du | sort -n" >&2
    exit 1
  fi
}

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

rm -f "$bundle/data/mnist.npz"  # an earlier bundle's
[ -f "$bundle/data/cifar10-jpeg.tar.gz" ] || cp "$data_dir/cifar10-jpeg.tar.gz" "$bundle/data/"
[ -d "$bundle/data/fashion-mnist" ] || cp -r "$fashion_dir" "$bundle/data/fashion-mnist"

if [ "${1:-}" = --check-here ]; then
  check_size
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

check_size
git sparse-checkout set --no-cone '/*' "${hidden[@]/#/!/}"
echo "device_bundle: ${hidden[*]} left the working tree (bash scripts/device_bundle.sh --restore brings them back)"
du -sh "$bundle" | sed 's/^/device_bundle: carried /'
cat <<'EOF'
device_bundle: give the device tool carry [".device"] and a command like:
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .device/whl/*.whl &&
  export PYTHONPATH=/tmp/site:$PWD/.device/site KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false
  NIN_KERAS_DATA_DIR=$PWD/.device/data NIN_KERAS_BENCH_RESULTS=$OUT PYTHONUNBUFFERED=1 &&
  python3 benchmarks/ablation.py --epochs 36 --train 50000 --validation 5000 --test 10000
  --parallel 3 --runs-dir $OUT/search --checkpoint-every 0 2>&1 | tee $OUT/log
(Fashion-MNIST: --recipe nin_fashion_mnist_long --epochs 60 --train 60000 --validation 5000;
files come back at most 2 folders down: $OUT/search/<run>/metrics.csv does)
EOF
