#!/usr/bin/env bash
# Every measurement issues 14 and 16 need from a CPU that multiplies bf16 natively (AMX or AVX512-BF16), in
# one command, for the session that first lands on one:
#   bash scripts/native_bf16_checks.sh
# 1. issue 16: `sian derain`'s default (auto) against fp32 at 481x321, and the SIAN/PReNet ratios, three
#    `sian bench` runs (the table's "inference ... sian: bf16 image rate" line is the speed-up asked: >= 2x);
#    issue 14: the training step rate in bf16 against fp32 in the same runs (asked: >= 1.6x).
#    Then (issue 16) whether bf16 seconds per megapixel stay flat up to the largest automatic tile (1152) there
#    too, as on the AVX512-BF16 EPYC: `sian.inference.auto_tile` assumes it.
# 2. issue 16: the Rain100L cost of bf16 inference on all 100 images, the authors' SIAN and our default model.
# Step 2 is resumable: run the script again after an interruption. Outputs: docs/benchmarks/
# native-bf16-{amx|avx512bf16}-DATE-RUN.md, docs/results/precision/. Pause the training run first (SIGTERM): the
# benchmarks want the whole machine. Elsewhere the script refuses: bf16 there is emulated and 10-40x slower.
# Done so far (docs/benchmarks.md, "Reduced precision"): steps 1 and 2 on an AVX512-BF16 CPU without AMX
# (2026-11-26; step 2's CSVs are complete, so a rerun only reprints them). Left for a CPU with AMX: step 1
# (issue 16's 2x is asked there). The GPU machines the `device` tool lends had an AMX Xeon host on
# 2026-11-27: `bash scripts/gpu_precision_checks.sh amx` runs step 1 there, pinned to two cores.
# Issue 14's quality cost of bf16 training (`python scripts/bf16_training_check.py`, three 1500-step runs, about
# 2.5 hours of the machine) ran on the AVX512-BF16 EPYC on 2026-11-27 and is no longer part of this script: both
# instruction sets round the operands to bf16 and accumulate in fp32, and step 1 measures the step rate.
set -euo pipefail
cd "$(dirname "$0")/.."
sian="${SIAN:-.venv/bin/sian}"
python="${PYTHON:-.venv/bin/python}"
if ! "$python" -c "from sian.precision import cpu_features as f; import sys; sys.exit(not (f()['amx_bf16'] or f()['avx512_bf16']))"; then
  echo "this CPU has neither AMX-BF16 nor AVX512-BF16 ($("$python" -c 'from sian.precision import describe_machine as d; print(d())')): nothing to measure here" >&2
  exit 1
fi
if pgrep -f "sian train" > /dev/null; then
  echo "a training run is going: pause it first (pkill -TERM -f 'sian train'), then run this again" >&2
  exit 1
fi
stamp="$(date -u +%Y-%m-%d)"
kind="$("$python" -c "from sian.precision import cpu_features as f; print('amx' if f()['amx_bf16'] else 'avx512bf16')")"
for run in 1 2 3; do
  "$sian" bench --size 481x321 --precision fp32 --precision auto --train-precision fp32 --train-precision bf16 \
    --repeats 7 --markdown "docs/benchmarks/native-bf16-$kind-$stamp-$run.md"
done
"$python" scripts/onednn_breakdown.py  # which kernels oneDNN ran (AMX tiles?), convolutions against the rest
"$python" scripts/tile_study.py --sizes 384 768 1152 --precision auto > "docs/benchmarks/tile-study-$stamp-$kind-auto.md"
default_model="$("$python" -c "from sian.inference import DEFAULT_MODEL; print(DEFAULT_MODEL)")"
for model in sian-rain100l "$default_model"; do
  "$python" scripts/precision_cost.py --model "$model" --precision bf16
done
