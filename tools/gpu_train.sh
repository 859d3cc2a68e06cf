#!/usr/bin/env bash
# Continue our training runs on a GPU machine lent by the `device` tool, for SECONDS in all, then bring each
# run's files back through $OUT as RUN.tar (state.pt, best.safetensors, log.jsonl, summary.json, STOPPED):
#   bash tools/gpu_train.sh SECONDS CONFIG [CONFIG ...]
# The configs run in order, each until it is done, its stopping rule (train.stop) ends it, or the time is up,
# each resumed from its committed state (or started from its model.init). Same configs, same runs as on the CPU: the log records the machine of
# every resume and `sian train CONFIG --summary` counts GPU steps in CPU-equivalent hours.
#
# Here first:  python tools/gpu_kit.py pack     (build/gpu/wheels, build/gpu/train/part1..N; it prints the calls)
# Then device calls back to back (the machine stays warm 30 s between them; each call's carried parts stay):
#   one call carrying ["build/gpu/wheels"], then one per part, carry ["build/gpu/train/partK"], command "true";
#   the last part's call runs the training instead, e.g. with timeout_s 600:
#     bash tools/gpu_train.sh 540 configs/rain100l-cpu.yaml configs/sian-general.yaml configs/sian-streaks-heavy.yaml
#   (the Rain100L run alone needs only the first parts, which hold Rain100L_train and nothing else: pack
#   prints both plans). A 15-minute lease: ~1 min to start, ~10 s per call, then the training calls.
# Back here: for f in FILES_AT/*.tar; do tar -xf "$f" -C checkpoints; done, then resume on the CPU as usual.
# Extract them before any further call too: every call sends this working tree, whose checkpoints then
# replace the machine's (a second training call would otherwise resume from the older state).
# Measured on an H200 (2026-11-26): the Rain100L run at 15-19 steps/s with validation (a 2-core CPU: 0.32-0.39).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:?usage: gpu_train.sh SECONDS CONFIG [CONFIG ...]}"
shift
[ "$#" -gt 0 ] || { echo "name at least one config" >&2; exit 2; }
start="$(date +%s)"
[ -d build/gpu/wheels ] || { echo "missing build/gpu/wheels: carry it (see the top of this script)" >&2; exit 2; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site build/gpu/wheels/*.whl
export PYTHONPATH="/tmp/site:$PWD/src" PYTHONUNBUFFERED=1
# Unpacked where the runs' saved configs expect it (../shared beside the checkout, SIAN_SHARED unset): a
# resume refuses a config whose data paths differ from the saved ones.
unset SIAN_SHARED
python3 tools/gpu_kit.py unpack ../shared build/gpu/train/part*
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || echo "no nvidia-smi: training where sian finds a device"
# Data workers render the synthetic rain beside the GPU; samples are a function of (seed, index), so
# the worker count changes nothing but speed (it is one of the keys a resume may change).
workers="$(( $(nproc) > 4 ? $(nproc) / 2 : 0 ))"
for config in "$@"; do
  left="$(( start + seconds - $(date +%s) ))"
  if (( left < 60 )); then echo "no time left for $config"; break; fi
  run="$(python3 -c "import sys; from sian.training import load_config; print(load_config(sys.argv[1], []).train.out_dir)" "$config")"
  status=0
  timeout -s TERM -k 60 "$left" python3 -m sian train "$config" data.workers="$workers" --resume || status=$?
  [ "$status" -eq 0 ] || [ "$status" -eq 124 ] || [ "$status" -eq 143 ] || echo "$config: training exited with $status" >&2
  name="$(basename "$run")"
  files=()
  for f in state.pt best.safetensors log.jsonl summary.json STOPPED; do [ -f "$run/$f" ] && files+=("$name/$f"); done
  if (( ${#files[@]} )); then  # a run stopped before its first validation has no best.safetensors yet
    tar -cf "${OUT:-/tmp}/$name.tar" -C "$(dirname "$run")" "${files[@]}"
    tail -n 2 "$run/log.jsonl" || true
  fi
done
