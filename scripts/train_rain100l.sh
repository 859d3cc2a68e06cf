#!/usr/bin/env bash
# Start or resume issue 14's run (SIAN from scratch on the Rain100L training set) in the background, or stop it:
#   bash scripts/train_rain100l.sh [key=value ...]
#   bash scripts/train_rain100l.sh --stop      # SIGTERM: the step and a checkpoint finish, then it exits
# The run lives in checkpoints/sian-rain100l-ours/; scripts/train.sh says how it runs.
exec "$(dirname "$0")/train.sh" configs/rain100l-cpu.yaml "$@"
