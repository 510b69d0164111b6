#!/usr/bin/env bash
# Everything in docs/RESULTS.md after the training runs of bench/train_runs.sh.
# Usage: bash bench/results_runs.sh baseline|evaluate|ablations|figures
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
M=.venv/bin/mtvae
DATA=${DATA:-data/pn}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p bench/results docs/img
# the baseline's top-k filter keeps 10% of the vocabulary: the same share of mtvae's
topk10() { python3 -c "import json; print(int(0.1 * json.load(open('$DATA/meta.json'))['vocab_size']))"; }
case "$1" in
  baseline)  # the original study, same train split, same 30-minute budget as mtvae small
    $PY bench/seed_baseline.py --data "$DATA" --minutes 30 --out runs/seed-baseline ;;
  evaluate)  # mtvae small (30 min) with the baseline's samples in the same statistics table
    $M evaluate runs/small-30min "$DATA" --split test --samples 32 --bars 8 --max-windows 200 \
       --compare "seed baseline=runs/seed-baseline/samples" --json bench/results/eval_small.json ;;
  evaluate-topk)  # the same, sampling as the baseline does: top-k keeping 10% of the vocabulary
    K=$(topk10)
    $M evaluate runs/small-30min "$DATA" --split test --samples 32 --bars 8 --max-windows 200 \
       --top-k "$K" --compare "seed baseline=runs/seed-baseline/samples" \
       --json bench/results/eval_small_topk.json ;;
  evaluate-long)  # the 4x-budget run, plain sampling and top-k 10%, side by side (one core each)
    K=$(topk10)
    COMMON_EVAL="--split test --samples 32 --bars 8 --max-windows 200 --quiet"
    $M evaluate runs/small-long "$DATA" $COMMON_EVAL --json bench/results/eval_small_long.json \
       > bench/results/eval_small_long.txt &
    $M evaluate runs/small-long "$DATA" $COMMON_EVAL --top-k "$K" \
       --json bench/results/eval_small_long_topk.json > bench/results/eval_small_long_topk.txt &
    wait ;;
  ablations)  # equal budget (300 steps each): likelihood and the rest on the test split,
    # two at a time (one per core)
    for pair in "abl-mtvae abl-no-vae" "abl-no-memory abl-no-compression"; do
      for r in $pair; do
        $M evaluate runs/$r "$DATA" --split test --samples 16 --bars 8 --max-windows 100 \
           --quiet --json bench/results/eval_$r.json > bench/results/eval_$r.txt &
      done
      wait
    done ;;
  figures)
    $PY bench/figures.py curves runs/abl-mtvae runs/abl-no-vae runs/abl-no-memory \
        runs/abl-no-compression --out docs/img/ablations.png
    $PY bench/figures.py overlap bench/results/eval_small.json \
        "mtvae small-long (2000 steps)=bench/results/eval_small_long.json" --out docs/img/overlap.png
    cp runs/small-long/loss.png docs/img/training-small-long.png
    $PY bench/figures.py latents runs/small-30min "$DATA" --out docs/img/latents.png
    cp runs/small-30min/loss.png docs/img/training-small-30min.png
    A=$(awk -F, '$7=="test" && $2 ~ /jigs/ {print $3; exit}' "$DATA/manifest.csv")
    B=$(awk -F, '$7=="test" && $2 ~ /reels/ {print $3; exit}' "$DATA/manifest.csv")
    $PY bench/figures.py interpolation runs/small-30min "$A" "$B" --out docs/img/interpolation.png ;;
esac
