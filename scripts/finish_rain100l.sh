#!/usr/bin/env bash
# Issue 14's run to its end and what follows it, unattended and resumable (start it first thing in a session):
#   nohup bash scripts/finish_rain100l.sh > build/finish-rain100l.log 2>&1 &
# 1. Resume the Rain100L run (scripts/train_rain100l.sh) and wait for its end: the trainer applies the stopping
#    rule fixed before training (configs/rain100l-cpu.yaml, train.stop) after every validation and writes its
#    verdict to checkpoints/sian-rain100l-ours/STOPPED (scripts/train.sh then refuses to resume it).
# 2. Score the run's best on the Rain100L test set (report only) and ship it as sian-rain100l-ours with its card.
# 3. Issue 17: the self-ensembles of the shipped model (scripts/self_ensemble_rain100l.sh), then the results page.
# 4. Issue 15: start the general model's fine-tune from the run's best (configs/sian-general.yaml).
# Every step is skipped when its output exists, so running it again after an interruption continues. Each
# heavy step runs alone on the machine (training has ended first), so their times are comparable.
set -euo pipefail
cd "$(dirname "$0")/.."
python=".venv/bin/python"
run="checkpoints/sian-rain100l-ours"
pidfile="build/train-sian-rain100l-ours.pid"
say() { echo "[$(date -u '+%F %H:%M:%S')] $*"; }
training() { [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }
status() { "$python" -c "import json,sys; print(json.load(open(sys.argv[1]))['status'])" "$run/summary.json"; }

if [[ ! -f "$run/STOPPED" ]]; then
  training || bash scripts/train_rain100l.sh
  while training; do sleep 60; done
  if [[ ! -f "$run/STOPPED" && "$(status)" != finished ]]; then
    say "the run ended without its rule's verdict (status $(status): stopped by hand or crashed): see $run/train.out"
    exit 1
  fi
fi
say "the run has ended: $(cat "$run/STOPPED" 2>/dev/null || echo "all its steps done")"

"$python" scripts/results_rain100l.py > build/results-rain100l.log  # scores the best (cached when done)
"$python" scripts/ship_weights.py rain100l
bash scripts/self_ensemble_rain100l.sh
"$python" scripts/results_rain100l.py > build/results-rain100l.log  # the page again: shipped, with ensembles
say "shipped sian-rain100l-ours; results: docs/results-rain100l.md"

general_pid="build/train-sian-general.pid"
if ! { [[ -f "$general_pid" ]] && kill -0 "$(cat "$general_pid")" 2>/dev/null; }; then
  bash scripts/train.sh configs/sian-general.yaml
fi
say "issue 15's general model is training: bash scripts/train.sh configs/sian-general.yaml --stop to pause it"
