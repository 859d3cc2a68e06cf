#!/usr/bin/env bash
# Issue 5 checks, measured by commands: the benchmark table (SIAN vs PReNet, in one run), the authors'
# SIAN through the optimised code on Rain100L (whole images), and the same with 256-pixel tiles.
# Needs ../shared (or SIAN_SHARED) and the imported weights (scripts/reproduce_rain100l.sh imports them).
# Takes ~60 minutes on 2 CPU cores (the benchmark alone ~27).  Usage: bash scripts/optimisation_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
sian="${SIAN:-.venv/bin/sian}"
shared="${SIAN_SHARED:-../shared}"
python="${sian%/sian}/python"
"$sian" bench --size 481x321 --size 1280x720 --repeats 15 --markdown docs/benchmarks/pass3-paired.md \
    --json docs/benchmarks/pass3-paired.json
"$sian" eval --model sian-rain100l --data "$shared/data/Rain100L_test" --csv docs/results/sian-rain100l-optimised.csv
"$python" scripts/compare_scores.py docs/results/sian-rain100l-optimised.csv \
    "$shared/weights/sian_authors/rain100l_per_image_scores.txt"
"$sian" eval --model sian-rain100l --data "$shared/data/Rain100L_test" --tile 256 --tile-overlap 64 \
    --csv docs/results/sian-rain100l-tiled256.csv
