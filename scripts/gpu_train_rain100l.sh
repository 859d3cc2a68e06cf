#!/usr/bin/env bash
# Continue issue 14's run (checkpoints/sian-rain100l-ours) on a GPU machine lent by the `device` tool, for
# SECONDS of training (default 420), then bring the run's files back through $OUT. Same config, same run:
# the log records the machine of every resume, and wall_seconds keeps counting (a GPU hour is a machine-hour).
#
# Here first:  python scripts/gpu_kit_rain100l.py pack          (build/gpu: wheels, part1, part2; ~54 MB)
# Then two device calls, back to back (the machine stays warm 30 s between them):
#   1. carry ["build/gpu/part1", "build/gpu/wheels"], command "ls build/gpu"    (the repository is ~34 MB
#      of the 64 MiB a call carries, so the data travels in two calls; the first call's files stay there)
#   2. carry ["build/gpu/part2"], command "bash scripts/gpu_train_rain100l.sh 420", timeout_s 600
# Back here: copy the returned files into checkpoints/sian-rain100l-ours/ and resume on the CPU as usual
# (bash scripts/train_rain100l.sh), or stop if the run is finished.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-420}"
run="checkpoints/sian-rain100l-ours"
for part in build/gpu/part1 build/gpu/part2 build/gpu/wheels; do
  [ -d "$part" ] || { echo "missing $part: carry it (see the top of this script)" >&2; exit 2; }
done
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site build/gpu/wheels/*.whl
export PYTHONPATH="/tmp/site:$PWD/src" PYTHONUNBUFFERED=1
# Unpacked where the run's saved config expects it (../shared beside the checkout, SIAN_SHARED unset): a
# resume refuses a config whose data paths differ from the saved ones.
unset SIAN_SHARED
python3 scripts/gpu_kit_rain100l.py unpack ../shared build/gpu/part1 build/gpu/part2
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
status=0
timeout -s TERM -k 60 "$seconds" python3 -m sian train configs/rain100l-cpu.yaml --resume || status=$?
[ "$status" -eq 0 ] || [ "$status" -eq 124 ] || echo "training exited with $status" >&2
cp "$run/state.pt" "$run/best.safetensors" "$run/log.jsonl" "$run/summary.json" "${OUT:-/tmp}/"
tail -n 3 "$run/log.jsonl"
