#!/usr/bin/env bash
# Reproduce the authors' published Rain100L numbers through our code (docs/results.md).
# Needs ../shared (or SIAN_SHARED) and an installed sian. Takes ~15 minutes on 2 CPU cores.
# Usage: bash benchmarks/reproduce_rain100l.sh [OUTDIR]   (default: docs/results)
set -euo pipefail
cd "$(dirname "$0")/.."
shared="${SIAN_SHARED:-../shared}"
out="${1:-docs/results}"
sian="${SIAN:-.venv/bin/sian}"
mkdir -p "$out"

"$sian" weights import "$shared/weights/sian_authors/rain100l.pth" --name sian-rain100l
"$sian" weights import "$shared/weights/prenet_authors/Rain100L/PReNet6.pth" --name prenet-rain100l
{
    echo "# machine: $(nproc) cores, $(uname -m), torch $("${sian%/sian}/python" -c 'import torch; print(torch.__version__)'); date: $(date -u +%F)"
    "$sian" eval --model sian-rain100l --data "$shared/data/Rain100L_test" --quantize round --csv "$out/sian-rain100l.csv"
    "$sian" eval --model prenet-rain100l --data "$shared/data/Rain100L_test" --quantize floor --csv "$out/prenet-rain100l-floor.csv"
} 2> >(tr '\r' '\n' | grep -v '^eval:' >&2) | tee "$out/rain100l.txt"
"${sian%/sian}/python" benchmarks/compare_scores.py "$out/sian-rain100l.csv" \
    "$shared/weights/sian_authors/rain100l_per_image_scores.txt" | tee -a "$out/rain100l.txt"
