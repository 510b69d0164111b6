#!/usr/bin/env bash
# The real training runs reported in docs/RESULTS.md, on the POP909 + Nottingham train split.
# Usage: bash bench/train_runs.sh main|long|ablations   (main and ablations use one CPU thread each)
set -euo pipefail
cd "$(dirname "$0")/.."
M=.venv/bin/mtvae
DATA=${DATA:-data/pn}
[ -f "$DATA/meta.json" ] || $M prepare ../shared/data/pop909 ../shared/data/nottingham --out "$DATA" --quiet
export OMP_NUM_THREADS=1
COMMON="--preset small --batch-size 4 --val-every 50 --patience 6 --quiet"
case "${1:-main}" in
  main)  # 30 minutes of mtvae small
    $M train "$DATA" --out runs/small-30min $COMMON --max-minutes 30 --max-steps 900 ;;
  long)  # the same model and settings with ~4x the budget: 2000 steps, two threads
    OMP_NUM_THREADS=2 $M train "$DATA" --out runs/small-long --preset small --batch-size 4 \
       --val-every 100 --patience 6 --quiet --max-steps 2000 --max-minutes 50 ;;
  ablations)  # equal budget: 300 steps each (the same 614k training tokens), two at a time
    # (one per core); equal steps rather than equal minutes, so that a busy machine cannot
    # give one variant less training than another
    ABL="$COMMON --max-steps 300 --max-minutes 60"
    $M train "$DATA" --out runs/abl-mtvae $ABL &
    $M train "$DATA" --out runs/abl-no-vae $ABL --no-vae &
    wait
    $M train "$DATA" --out runs/abl-no-memory $ABL --no-memory &
    $M train "$DATA" --out runs/abl-no-compression $ABL --no-compression &
    wait ;;
esac
