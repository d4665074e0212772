#!/usr/bin/env bash
# A long training run of one recipe in the background: `bash scripts/train_in_background.sh RECIPE`
# (a name under zoo/recipes/). Rerunning it continues from zoo/runs/RECIPE/checkpoint.npz (weight
# average included). The log is appended to zoo/runs/RECIPE/train.log, a line per start naming the
# CPU; strip the progress-bar lines (those holding "━") before committing it.
set -euo pipefail
cd "$(dirname "$0")/.."
recipe=${1:?usage: bash scripts/train_in_background.sh RECIPE (a name under zoo/recipes/)}
[ -f "zoo/recipes/$recipe.json" ] || { echo "error: no recipe zoo/recipes/$recipe.json" >&2; exit 2; }
bash scripts/setup.sh
out=zoo/runs/$recipe
mkdir -p "$out"
export TF_CPP_MIN_LOG_LEVEL=2
{ echo "=== $(date -u +%FT%TZ) start on $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"; } >> "$out/train.log"
nohup .venv/bin/nin-keras train "$recipe" --out "$out" >> "$out/train.log" 2>&1 &
echo "training in the background: PID $! (log: $out/train.log)"
