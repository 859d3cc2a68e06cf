#!/usr/bin/env bash
# Issue 16's measurements on a machine lent by the `device` tool, in one call:
#   bash scripts/gpu_precision_checks.sh [STEP ...]      (default: amx blurs bench cost tests)
#   amx    the lent machine's own CPU, if it has AMX (the H200 machines' Xeon host had it on 2026-11-27): three
#          `sian bench --device cpu` runs at 481x321 pinned to 2 cores, auto against fp32: issue 16's last
#          acceptance line (>= 2x on a CPU with AMX), which no 2-core session machine has offered yet, then
#          scripts/onednn_breakdown.py on the same two cores (which kernels oneDNN ran). ~5 min.
#   bench  `sian bench --device cuda` at 481x321 in fp32 (IEEE, no TF32), bf16, fp16 and auto, three runs
#          (~75 s each on an H200, most of it in the isolated footprint runs).
#   blurs  scripts/blur_cache_probe.py on the GPU, fp32 and bf16: what building the DoG's blur weights once
#          saves per inference (same process, alternating turns, outputs checked bit-identical). ~1 min.
#   cost   scripts/precision_cost.py --device cuda: the PSNR cost of bf16 and fp16 on all 100 Rain100L test
#          images, the authors' SIAN and sian-general (needs the eval kit below; ~25 s each on an H200).
#   tests  the test files that touch CUDA, on CUDA.
# Every step is time-boxed; everything lands in $OUT/gpu-precision.tar, re-written after every step, so a call
# stopped at its limit still returns what finished. Extract it into build/ here, then copy what the docs cite.
# Done on 2026-11-27 (docs/benchmarks.md, "On a GPU"): bench and cost, before the blur weights were cached.
# Left: amx, blurs, tests (one call, carrying build/gpu/wheels: `bash scripts/gpu_precision_checks.sh amx blurs
# tests`, then bench again if time is left).
#
# The wheels the device image lacks: `python scripts/gpu_kit.py pack eval` here (build/gpu/wheels, and for
# `cost` build/gpu/eval/part1..N); it prints the device calls, one per folder carried, "true" until the last,
# which runs this script. Without `cost` one call does: carry ["build/gpu/wheels"], timeout_s 560.
set -uo pipefail
cd "$(dirname "$0")/.."
steps=("$@")
[ "${#steps[@]}" -gt 0 ] || steps=(amx blurs bench cost tests)
out="${OUT:-/tmp/out}"
results=/tmp/gpu-precision
stamp="$(date -u +%Y-%m-%d)"
mkdir -p "$out" "$results"
save() { tar -cf "$out/gpu-precision.tar" -C "$(dirname "$results")" "$(basename "$results")"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  build/gpu/wheels/*.whl || exit 2
export PYTHONPATH="/tmp/site:$PWD/src" PYTHONUNBUFFERED=1 SIAN_SHARED=/tmp/shared
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv,noheader
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
  lscpu; } > "$results/machine.txt" 2>&1
grep -E "Model name|^CPU\(s\)" "$results/machine.txt"

step() {  # step NAME SECONDS COMMAND...: time-boxed, logged, saved
  local name="$1" seconds="$2"
  shift 2
  echo "== $name ($(date -u +%H:%M:%S))"
  timeout -k 10 "$seconds" "$@" > "$results/$name.log" 2>&1
  echo "rc $? after $name" | tee -a "$results/$name.log"
  grep -E "ratio|rate|auto|cost|blur|passed|failed|error" "$results/$name.log" | tail -n 12
  save
}

for s in "${steps[@]}"; do
  case "$s" in
    amx)
      if ! grep -qw amx_bf16 /proc/cpuinfo; then echo "amx: this host CPU has no AMX-BF16; skipped"; continue; fi
      for run in 1 2 3; do  # two cores, two threads: the 2-core machines the issue's figures come from
        step "amx-$run" 150 env OMP_NUM_THREADS=2 taskset -c 0,1 python3 -m sian bench --device cpu --size 481x321 \
          --precision fp32 --precision auto --train-precision none --repeats 7 \
          --markdown "$results/native-bf16-amx-$stamp-$run.md"
      done  # and whether oneDNN multiplied on AMX tiles (brg_conv_fwd:avx512_core_amx), convolutions against the rest
      step amx-onednn 90 env OMP_NUM_THREADS=2 taskset -c 0,1 python3 scripts/onednn_breakdown.py ;;
    bench)
      for run in 1 2 3; do
        step "bench-$run" 100 python3 -m sian bench --device cuda --size 481x321 --repeats 20 --train-precision none \
          --precision fp32 --precision bf16 --precision fp16 --precision auto --markdown "$results/bench-cuda-$run.md"
      done ;;
    blurs)
      for precision in fp32 bf16; do
        step "blurs-$precision" 60 python3 scripts/blur_cache_probe.py --device cuda --size 481x321 \
          --precision "$precision" --turns 30
      done ;;
    cost)
      python3 scripts/gpu_kit.py unpack /tmp/shared build/gpu/eval/part* || { echo "cost: carry the eval kit"; continue; }
      for model in sian-rain100l sian-general; do
        for precision in bf16 fp16; do
          step "cost-$model-$precision" 60 python3 scripts/precision_cost.py --device cuda --model "$model" \
            --precision "$precision"
          cp docs/results/precision/"$model-$precision"-cuda.* "$results/" 2>/dev/null
        done
      done ;;
    tests)
      step tests 150 python3 -m pytest -q -p no:cacheprovider tests/test_benchmark.py tests/test_precision.py \
        tests/test_models.py ;;
    *) echo "unknown step $s (amx, blurs, bench, cost, tests)" >&2; exit 2 ;;
  esac
done
echo "done $(date -u +%H:%M:%S)"
