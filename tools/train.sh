#!/usr/bin/env bash
# Start or resume one of our training runs in the background, or stop it:
#   bash tools/train.sh CONFIG [key=value ...]     e.g. configs/rain100l-cpu.yaml, configs/sian-general.yaml
#   bash tools/train.sh CONFIG --stop              SIGTERM: the step and a checkpoint finish, then it exits
# The run lives in the config's train.out_dir (state.pt every few minutes, log.jsonl, best.safetensors); commit
# that folder at the end of a session and the next session resumes it with the same command.
#
# On a CPU with two or more cores the run is two torchrun processes of half the cores each, one half of every
# batch each (the same global batch, samples and gradient as one process: sian.training.datasets.StepSampler):
# on the 2-core AMD EPYC of 2026-11-26 that stepped 3-4% faster than one process of two threads
# (docs/training.md). SIAN_PROCS=1 runs one process.
set -euo pipefail
cd "$(dirname "$0")/.."
config="${1:?usage: train.sh CONFIG [--stop | key=value ...]}"
shift
python=".venv/bin/python"
out="$("$python" -c "import sys; from sian.training import load_config; print(load_config(sys.argv[1], []).train.out_dir)" "$config")"
pidfile="build/train-$(basename "$out").pid"
mkdir -p "$out" build

if [[ "${1:-}" == "--stop" ]]; then
  pid="$(cat "$pidfile" 2>/dev/null || true)"
  if [[ -z "$pid" ]] || ! kill -0 "$pid" 2>/dev/null; then
    echo "no training of $out running (no live pid in $pidfile)"; exit 0
  fi
  # The workers, not torchrun's agent: the agent would SIGKILL them 30 s after forwarding the signal, which a
  # validation in progress (~80 s) outlasts. Each worker finishes its step, they checkpoint together, exit.
  pkill -TERM -P "$pid" 2>/dev/null || kill -TERM "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 2; done
  echo "stopped $out at step $("$python" -c "import json,sys; print(json.load(open(sys.argv[1]))['step'])" "$out/summary.json")"
  exit 0
fi
if [[ -f "$out/STOPPED" ]]; then  # written by the trainer when the run's stopping rule (train.stop) ended it
  echo "$out was ended by its stopping rule: $(cat "$out/STOPPED"); delete $out/STOPPED to train it further" >&2
  exit 1
fi
if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  echo "$out is already training (pid $(cat "$pidfile")); stop it first: bash tools/train.sh $config --stop" >&2
  exit 1
fi

cores="$(nproc)"
procs="${SIAN_PROCS:-$(( cores >= 2 ? 2 : 1 ))}"
threads="$(( cores / procs > 0 ? cores / procs : 1 ))"
if (( procs > 1 )); then
  launch=(.venv/bin/torchrun --standalone --nproc_per_node="$procs" -m sian)
else
  launch=(.venv/bin/sian)
fi
nohup "${launch[@]}" train "$config" train.threads="$threads" "$@" --resume >> "$out/train.out" 2>&1 &
echo $! > "$pidfile"
echo "training pid $! ($procs process(es) x $threads thread(s)) -> $out (log: $out/train.out, $out/log.jsonl)"
