#!/usr/bin/env bash
# flip2 / flip4 self-ensembles on all 100 Rain100L test images, with their time cost, for the
# authors' SIAN weights, our default model and, once shipped, sian-rain100l-ours (docs/results.md). One `sian eval --tta none,flip2,flip4` per
# model: four forward passes per image serve the three modes, each scored exactly as its own run would be and
# timed by the passes it needs. Resumable: a model whose JSON exists is skipped (delete it to re-run).
# Needs ../shared (or SIAN_SHARED); ~20 minutes per model on 2 CPU cores. Pause training while it runs.
#   bash benchmarks/self_ensemble_rain100l.sh [OUTDIR]     (default: docs/results/self-ensemble)
set -euo pipefail
cd "$(dirname "$0")/.."
shared="${SIAN_SHARED:-../shared}"
out="${1:-docs/results/self-ensemble}"
sian="${SIAN:-.venv/bin/sian}"
mkdir -p "$out"
"$sian" weights import "$shared/weights/sian_authors/rain100l.pth" --name sian-rain100l
default_model=$("${sian%/sian}/python" -c 'from sian.inference import DEFAULT_MODEL; print(DEFAULT_MODEL)')
models=(sian-rain100l "$default_model")
# Ours too: sian-rain100l-ours, once tools/ship_weights.py rain100l has shipped it.
ours=$("${sian%/sian}/python" -c 'from sian.hub import WEIGHTS; print("sian-rain100l-ours" in WEIGHTS)')
[[ "$ours" == True && "$default_model" != sian-rain100l-ours ]] && models+=(sian-rain100l-ours)
for model in "${models[@]}"; do
    [[ -f "$out/$model.json" ]] && { echo "$model: $out/$model.json exists, skipped"; continue; }
    {
        echo "# $model; machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(uname -m); date: $(date -u '+%F %H:%M UTC')"
        "$sian" eval --model "$model" --data "$shared/data/Rain100L_test" --quantize round \
            --tta none,flip2,flip4 --csv "$out/$model.csv" --json "$out/$model.json.part"
    } 2> >(tr '\r' '\n' | grep -v '^eval:' >&2) | tee "$out/$model.txt"
    mv "$out/$model.json.part" "$out/$model.json"
done
"${sian%/sian}/python" benchmarks/self_ensemble_table.py "$out" | tee "$out/summary.md"
