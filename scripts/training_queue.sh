#!/usr/bin/env bash
# The project's queue of training work, unattended and resumable (start it first thing in a session, in the
# background; it continues where the last session's left off):
#   nohup bash scripts/training_queue.sh > build/training-queue.log 2>&1 &
# 1. Issue 14: the Rain100L run to its end. The trainer applies the stopping rule fixed before training
#    (configs/rain100l-cpu.yaml, train.stop) after every validation and writes its verdict to
#    checkpoints/sian-rain100l-ours/STOPPED.
# 2. Score the run's best on the Rain100L test set (report only), ship it as sian-rain100l-ours with its card,
#    run issue 17's self-ensembles of it (scripts/self_ensemble_rain100l.sh) and remake the results page.
# 3. Issue 15: the general model's fine-tune from that best (configs/sian-general.yaml), then the heavy model's
#    (configs/sian-streaks-heavy.yaml), each to its end; then both on the fixed validation sets and on the
#    held-out heavy rain (scripts/validate_models.py, scripts/heavy_rain_test.py), beside every shipped model,
#    and the real-rain gallery with both candidates (scripts/gallery_real_rain.py, into build/). The committed
#    rule's verdict (rules 1 and 2) is written under docs/results/issue15-validation.md; rule 3 is the gallery, by
#    eye; shipping is then `python scripts/ship_weights.py general` / `streaks-heavy`.
# Every step is skipped when its output exists. The heavy steps run one at a time, so their timings compare.
# To end a session: bash scripts/train.sh CONFIG --stop for the run in progress (this script then exits),
# commit its folder; the next session starts this script again.
set -euo pipefail
cd "$(dirname "$0")/.."
python=".venv/bin/python"
say() { echo "[$(date -u '+%F %H:%M:%S')] $*"; }

train_to_end() {  # CONFIG: start or resume the run in the background (scripts/train.sh) and wait for its end
  local config="$1" out pidfile status
  out="$("$python" -c "import sys; from sian.training import load_config; print(load_config(sys.argv[1], []).train.out_dir)" "$config")"
  pidfile="build/train-$(basename "$out").pid"
  status() { "$python" -c "import json,sys; print(json.load(open(sys.argv[1]))['status'])" "$out/summary.json" 2>/dev/null || echo none; }
  alive() { [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }
  if ! alive; then
    case "$(status)" in finished | stopped) say "$out: done ($(status))"; return 0 ;; esac
    bash scripts/train.sh "$config"
  fi
  say "$config: training ($out/train.out)"
  while alive; do sleep 60; done
  case "$(status)" in
    finished) say "$out: all its steps done" ;;
    stopped) say "$out: $(cat "$out/STOPPED")" ;;
    *) say "$out ended with status $(status) (stopped by hand, or crashed: see $out/train.out)"; exit 1 ;;
  esac
}

train_to_end configs/rain100l-cpu.yaml
"$python" scripts/results_rain100l.py > build/results-rain100l.log  # scores the best (cached once done)
"$python" scripts/ship_weights.py rain100l
bash scripts/self_ensemble_rain100l.sh
"$python" scripts/results_rain100l.py > build/results-rain100l.log  # the page again: shipped, with ensembles
say "shipped sian-rain100l-ours; results: docs/results-rain100l.md"

train_to_end configs/sian-general.yaml
train_to_end configs/sian-streaks-heavy.yaml
candidates=(--model checkpoints/sian-general/best.safetensors --model checkpoints/sian-streaks-heavy/best.safetensors)
"$python" scripts/validate_models.py "${candidates[@]}"
"$python" scripts/heavy_rain_test.py "${candidates[@]}"
"$python" scripts/gallery_real_rain.py "${candidates[@]}"
say "issue 15: the rule's verdict is under docs/results/issue15-validation.md; look at build/gallery-real-rain" \
  "(rule 3), then python scripts/ship_weights.py general | streaks-heavy"
