#!/usr/bin/env bash
# Start or resume one of our shipped models' training runs in the background (issue 4):
#   bash scripts/train_synth.sh light|heavy [key=value ...]
# The run lives in checkpoints/sian-synth-<preset>/ (state.pt every 5 minutes, log.jsonl, best.safetensors);
# commit that folder before a session ends and the next session resumes it bit-exactly with the same command.
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:?usage: train_synth.sh light|heavy [key=value ...]}"
shift
sian="${SIAN:-.venv/bin/sian}"
out="checkpoints/sian-synth-$preset"
mkdir -p "$out"
nohup "$sian" train "configs/sian-synth-$preset.yaml" "$@" --resume >> "$out/train.out" 2>&1 &
echo "training pid $! -> $out (log: $out/train.out, $out/log.jsonl)"
