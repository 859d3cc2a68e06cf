#!/usr/bin/env bash
# The README's quick-training figure: train configs/cpu-quick.yaml from scratch (~7 minutes on 2 CPU
# cores), then score its best checkpoint on the first 20 Rain100L test images (evaluation only: the
# run never sees them). Output: docs/results/cpu-quick.txt.  Usage: bash benchmarks/cpu_quick.sh
set -euo pipefail
cd "$(dirname "$0")/.."
sian="${SIAN:-.venv/bin/sian}"
shared="${SIAN_SHARED:-../shared}"
out=runs/cpu-quick-figure
rm -rf "$out"
mkdir -p docs/results
{
    echo "# machine: $(nproc) cores, $(uname -m); date: $(date -u +%F)"
    start=$(date +%s)
    "$sian" train configs/cpu-quick.yaml train.out_dir="$out" 2> >(tr '\r' '\n' | grep -v '^train:' >&2)
    echo "training wall time: $(( $(date +%s) - start )) s"
    "$sian" train configs/cpu-quick.yaml train.out_dir="$out" --summary
    "$sian" eval --model "$out/best.safetensors" --data "$shared/data/Rain100L_test" --limit 20 2> >(tr '\r' '\n' | grep -v '^eval:' >&2)
} | tee docs/results/cpu-quick.txt
