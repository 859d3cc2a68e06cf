#!/usr/bin/env bash
# Steps per second of issue 14's training config as one process of all cores' threads against two torchrun
# processes of half the threads each (the same global batch, samples and gradient), in alternating runs:
#   bash scripts/processes_vs_threads.sh [ROUNDS]      # pause the training run first (scripts/train_rain100l.sh --stop)
# Each run trains 16 steps from scratch into build/ and logs pixels per second every 4 steps; the first
# window (warm-up) is dropped and the rest compared. docs/benchmarks.md reports it with the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-2}"
cores="$(nproc)"
(( cores >= 2 )) || { echo "needs 2 or more cores (found $cores)"; exit 1; }
out="build/processes-vs-threads"
args=(configs/rain100l-cpu.yaml train.steps=16 train.val_every=0 train.log_every=4 train.out_dir="$out/run")
lscpu | grep -E "Model name|^Flags" | cut -c1-200
run() {
  rm -rf "$out/run"; mkdir -p "$out"
  if [[ "$1" == one ]]; then .venv/bin/sian train "${args[@]}" train.threads="$cores" > "$out/$1.out" 2>&1
  else .venv/bin/torchrun --standalone --nproc_per_node=2 -m sian train "${args[@]}" train.threads="$(( cores / 2 ))" > "$out/$1.out" 2>&1; fi
  python3 - "$1" "$out/run/log.jsonl" >> "$out/rates.txt" <<'PY'
import json, sys
rates = [json.loads(l)["pixels_per_second"] for l in open(sys.argv[2]) if '"pixels_per_second"' in l][1:]
print(sys.argv[1], *(round(r) for r in rates))
PY
  tail -1 "$out/rates.txt"
}
rm -f "$out/rates.txt"
for _ in $(seq "$rounds"); do run one; run two; done
python3 - "$out/rates.txt" <<'PY'
import statistics, sys
rates = {"one": [], "two": []}
for line in open(sys.argv[1]):
    kind, *values = line.split()
    rates[kind] += [float(v) for v in values]
one, two = statistics.median(rates["one"]), statistics.median(rates["two"])
print(f"median pixels/s: one process {one:.0f}, two processes {two:.0f}: two/one = {two / one:.3f}")
PY
