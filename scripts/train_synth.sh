#!/usr/bin/env bash
# Start or resume one of our synthetic-rain models' training runs in the background (issue 4), or stop it:
#   bash scripts/train_synth.sh light|heavy [--stop | key=value ...]
# The run lives in checkpoints/sian-synth-<preset>/; scripts/train.sh says how it runs.
preset="${1:?usage: train_synth.sh light|heavy [--stop | key=value ...]}"
shift
exec "$(dirname "$0")/train.sh" "configs/sian-synth-$preset.yaml" "$@"
