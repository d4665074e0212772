#!/usr/bin/env bash
# The long CIFAR-10 run of zoo/recipes/nin_cifar10_modern.json, in the background; rerunning
# this script continues it from zoo/runs/nin_cifar10_modern/checkpoint.npz (EMA state included).
# The log is appended to zoo/runs/nin_cifar10_modern/train.log (strip the progress-bar lines,
# those holding "━", before committing it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out=zoo/runs/nin_cifar10_modern
mkdir -p "$out"
export TF_CPP_MIN_LOG_LEVEL=2
{ echo "=== $(date -u +%FT%TZ) start on $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"; } >> "$out/train.log"
nohup .venv/bin/nin-keras train nin_cifar10_modern --out "$out" >> "$out/train.log" 2>&1 &
echo "training in the background: PID $! (log: $out/train.log)"
