#!/usr/bin/env bash
# Issue 16's GPU half of `--precision auto`, measured on a GPU machine lent by the `device` tool, in one call:
#   1. `sian bench --device cuda`: SIAN and PReNet at 481x321 and 1920x1080 in fp32 (IEEE, no TF32), bf16,
#      fp16 and auto, training steps in all three; then twice more at 481x321, inference only (3 runs in all).
#   2. scripts/precision_cost.py --device cuda: the PSNR cost of bf16 and fp16 on all 100 Rain100L test images
#      with the authors' SIAN and with our default sian-general (cuDNN's own reduced-precision convolutions,
#      where the CPU run of fp16 was emulated), and fp32 on the GPU against the CPU's scores.
#   3. `sian derain --verbose` on one image: the precision auto picks on this GPU, and why.
#   4. the tests that touch CUDA, on CUDA.
# Everything lands in $OUT/gpu-precision.tar (re-written after every step, so a call stopped at its limit
# still returns what finished); extract it into build/ here and copy what the docs cite.
#
# Here first:  python scripts/gpu_kit.py pack eval     (build/gpu/wheels, build/gpu/eval/part1..N; prints the
# device calls: one per folder, carried, "true" until the last, which runs this script; timeout_s 560: the steps are time-boxed to about 530 s).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/out}"
results=/tmp/gpu-precision
mkdir -p "$out" "$results"
save() { tar -cf "$out/gpu-precision.tar" -C "$(dirname "$results")" "$(basename "$results")"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  build/gpu/wheels/*.whl || exit 2
export PYTHONPATH="/tmp/site:$PWD/src" PYTHONUNBUFFERED=1 SIAN_SHARED=/tmp/shared
python3 scripts/gpu_kit.py unpack /tmp/shared build/gpu/eval/part* || exit 2
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv,noheader
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
  lscpu | grep -E "Model name|^CPU\(s\)"; } 2>&1 | tee "$results/machine.txt"

step() {  # step NAME SECONDS COMMAND...: time-boxed, logged, saved
  local name="$1" seconds="$2"
  shift 2
  echo "== $name ($(date -u +%H:%M:%S))"
  timeout -k 10 "$seconds" "$@" > "$results/$name.log" 2>&1
  echo "rc $? after $name" | tee -a "$results/$name.log"
  tail -n 25 "$results/$name.log"
  save
}

sizes=(--size 481x321)
step bench-1 150 python3 -m sian bench --device cuda "${sizes[@]}" --size 1920x1080 --repeats 20 \
  --precision fp32 --precision bf16 --precision fp16 --precision auto \
  --train-precision fp32 --train-precision bf16 --train-precision fp16 --markdown "$results/bench-cuda-1.md"
for model in sian-rain100l sian-general; do
  for precision in bf16 fp16; do
    step "cost-$model-$precision" 60 python3 scripts/precision_cost.py --device cuda --model "$model" \
      --precision "$precision"
    cp docs/results/precision/"$model-$precision"-cuda.* "$results/" 2>/dev/null
  done
done
for run in 2 3; do
  step "bench-$run" 45 python3 -m sian bench --device cuda "${sizes[@]}" --repeats 20 --train-precision none \
    --precision fp32 --precision bf16 --precision fp16 --precision auto --markdown "$results/bench-cuda-$run.md"
done
step derain-verbose 30 python3 -m sian derain /tmp/shared/data/Rain100L_test/rainy/rain-001.png -o /tmp/derained \
  --verbose
step pytest-cuda 60 python3 -m pytest -q -p no:cacheprovider tests/test_benchmark.py tests/test_precision.py \
  tests/test_models.py tests/test_pipeline.py
echo "done $(date -u +%H:%M:%S)"
