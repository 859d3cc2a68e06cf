#!/usr/bin/env bash
# Start or resume issue 14's run (SIAN from scratch on the Rain100L training set) in the background:
#   bash scripts/train_rain100l.sh [key=value ...]
# The run lives in checkpoints/sian-rain100l-ours/ (state.pt every 5 minutes, log.jsonl, best.safetensors);
# commit that folder at the end of a session and the next session resumes it bit-exactly with the same command.
# Stop it with SIGTERM (kill PID): it finishes the step, writes a checkpoint and exits.
set -euo pipefail
cd "$(dirname "$0")/.."
sian="${SIAN:-.venv/bin/sian}"
out="checkpoints/sian-rain100l-ours"
mkdir -p "$out"
nohup "$sian" train configs/rain100l-cpu.yaml "$@" --resume >> "$out/train.out" 2>&1 &
echo "training pid $! -> $out (log: $out/train.out, $out/log.jsonl)"
