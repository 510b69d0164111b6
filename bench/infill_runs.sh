#!/usr/bin/env bash
# Issue #11: infilling at equal budget. The with-infilling run is `small`, 1000 steps, batch
# 4 x 512 tokens, the same batches and settings as bench/latent_runs.sh long-bias (the run
# without infilling, on the same songs), on a DATA_DIR prepared with the FILL token.
# Usage: bash bench/infill_runs.sh train|evaluate
set -euo pipefail
cd "$(dirname "$0")/.."
M=.venv/bin/mtvae
DATA=${DATA:-data/pn2}
[ -f "$DATA/meta.json" ] || $M prepare ../shared/data/pop909 ../shared/data/nottingham --out "$DATA" --quiet
LONG="--preset small --batch-size 4 --val-every 100 --patience 6 --quiet --max-steps 1000 --max-minutes 90 --beta-warmup-steps 500"
OLD="--beta-max 1 --free-bits 0.25 --aux-weight 0 --word-dropout 0"
case "${1:-train}" in
  train)
    export OMP_NUM_THREADS=${THREADS:-2}
    $M train "$DATA" --out runs/fim $LONG $OLD --infill 0.5 > logs/fim.log 2>&1 ;;
  evaluate)  # the same held-out songs, windows and samples as the latent runs, plus infilling
    export OMP_NUM_THREADS=2
    $M evaluate runs/fim "$DATA" --split test --samples 16 --bars 8 --max-windows 100 --quiet \
       --json bench/results/eval_fim.json > bench/results/eval_fim.txt ;;
esac
