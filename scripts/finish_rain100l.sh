#!/usr/bin/env bash
# Issue 14's run to its end and what follows it, unattended and resumable (start it first thing in a session):
#   nohup bash scripts/finish_rain100l.sh > build/finish-rain100l.log 2>&1 &
# 1. Resume the Rain100L run (scripts/train_rain100l.sh) and, after each validation, apply the stopping rule
#    fixed before training (scripts/summarize_log.py); when it says stop, stop the run and write its verdict to
#    checkpoints/sian-rain100l-ours/STOPPED (scripts/train.sh then refuses to resume it).
# 2. Score the run's best on the Rain100L test set (report only) and ship it as sian-rain100l-ours with its card.
# 3. Issue 17: the self-ensembles of the shipped model (scripts/self_ensemble_rain100l.sh), then the results page.
# 4. Issue 15: start the general model's fine-tune from the shipped run's best (configs/sian-general.yaml).
# Every step is skipped when its output exists, so running it again after an interruption continues. Each
# heavy step runs alone on the machine (training is stopped first), so their times are comparable.
set -euo pipefail
cd "$(dirname "$0")/.."
python=".venv/bin/python"
run="checkpoints/sian-rain100l-ours"
pidfile="build/train-sian-rain100l-ours.pid"
say() { echo "[$(date -u '+%F %H:%M:%S')] $*"; }
training() { [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

if [[ ! -f "$run/STOPPED" ]]; then
  training || bash scripts/train_rain100l.sh
  seen=""
  while true; do
    latest="$(grep -c '"val_psnr"' "$run/log.jsonl" || true)"
    if [[ "$latest" != "$seen" ]]; then
      seen="$latest"
      verdict="$("$python" scripts/summarize_log.py "$run/log.jsonl" | tail -1)"
      say "$verdict"
      if [[ "$verdict" == stop:* ]]; then
        bash scripts/train_rain100l.sh --stop
        step="$("$python" -c "import json,sys; print(json.load(open(sys.argv[1]))['step'])" "$run/summary.json")"
        printf '%s (at step %s, %s; scripts/summarize_log.py)\n' "$verdict" "$step" "$(date -u '+%F %H:%M UTC')" \
          > "$run/STOPPED"
        break
      fi
    fi
    if ! training; then
      say "the run is not training (crashed or stopped by hand): see $run/train.out"; exit 1
    fi
    sleep 60
  done
fi
say "run stopped: $(cat "$run/STOPPED")"
training && { say "the run is training although STOPPED exists: stop it first"; exit 1; }

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
