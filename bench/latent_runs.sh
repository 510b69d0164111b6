#!/usr/bin/env bash
# Issue #10: the levers against posterior collapse, at equal budget (300 steps of `small`,
# batch 4 x 512 tokens, the same batches in the same order), on the re-barred POP909 +
# Nottingham data; two runs at a time, one CPU thread each. β reaches its maximum at step
# 150 in every run so that the KL term acts within the budget.
# Usage: bash bench/latent_runs.sh pair1|pair2|pair3|pair4|long|long-aux|long-bias|evaluate RUN...|table
#        DATA=data/pn2 bash bench/latent_runs.sh context|ae|narrow|bag|slots|evaluate RUN...   (a DATA_DIR with FILL)
set -euo pipefail
cd "$(dirname "$0")/.."
M=.venv/bin/mtvae
DATA=${DATA:-data/pn}
[ -f "$DATA/meta.json" ] || $M prepare ../shared/data/pop909 ../shared/data/nottingham --out "$DATA" --quiet
export OMP_NUM_THREADS=1
ABL="--preset small --batch-size 4 --val-every 50 --patience 6 --quiet --max-steps 300 --max-minutes 90 --beta-warmup-steps 150"
OLD="--beta-max 1 --free-bits 0.25 --aux-weight 0 --word-dropout 0"   # the defaults before #10
KLT="--beta-max 0.2 --free-bits 1"                                     # lower β, KL target 64 nats/bar
run() { name=$1; shift; $M train "$DATA" --out runs/lat-$name $ABL "$@" > logs/lat-$name.log 2>&1; }
case "${1:-pair1}" in
  pair1) run base $OLD & run all $KLT --aux-weight 1 --word-dropout 0.3 & wait ;;
  pair2) run aux $OLD --aux-weight 1 & run klt $OLD $KLT & wait ;;
  pair3) run aux-klt $KLT --aux-weight 1 --word-dropout 0 & run wd $OLD --word-dropout 0.3 & wait ;;
  pair4) run all-no-memory $KLT --aux-weight 1 --word-dropout 0.3 --no-memory &
         run all-d128 $KLT --aux-weight 1 --word-dropout 0.3 --d-latent 128 & wait ;;
  long)  # 1000 steps (half the budget of RESULTS' 2000-step run: what this session's
    # clock allowed): the new defaults, then the old ones, on the same re-barred data, two
    # threads each; β at its maximum from step 500
    export OMP_NUM_THREADS=2
    LONG="--preset small --batch-size 4 --val-every 100 --patience 6 --quiet --max-steps 1000 --max-minutes 90 --beta-warmup-steps 500"
    $M train "$DATA" --out runs/lat-long-new $LONG > logs/lat-long-new.log 2>&1
    $M train "$DATA" --out runs/lat-long-old $LONG $OLD > logs/lat-long-old.log 2>&1 ;;
  long-aux)  # the same budget: the old KL settings plus the bag-of-notes loss only
    export OMP_NUM_THREADS=2
    LONG="--preset small --batch-size 4 --val-every 100 --patience 6 --quiet --max-steps 1000 --max-minutes 90 --beta-warmup-steps 500"
    $M train "$DATA" --out runs/lat-long-aux $LONG $OLD --aux-weight 1 > logs/lat-long-aux.log 2>&1 ;;
  long-bias)  # the same budget, one thread each: the old KL settings with the bar-bias path,
    # alone and with the bag-of-notes loss
    LONG="--preset small --batch-size 4 --val-every 100 --patience 6 --quiet --max-steps 1000 --max-minutes 90 --beta-warmup-steps 500"
    run long-bias $LONG $OLD --bar-bias & run long-bias-aux $LONG $OLD --bar-bias --aux-weight 1 & wait ;;
  context)  # context dropout at 0.25 and 0.5, the same budget and settings as runs/fim
    # (bench/infill_runs.sh: today's defaults, infilling 0.5), one thread each
    LONG="--preset small --batch-size 4 --val-every 100 --patience 6 --quiet --max-steps 1000 --max-minutes 90 --beta-warmup-steps 500"
    run cd25 $LONG $OLD --infill 0.5 --context-dropout 0.25 &
    run cd50 $LONG $OLD --infill 0.5 --context-dropout 0.5 & wait ;;
  ae)  # a probe, not a model: no KL weight at all (β 0) and a narrow posterior from the start
    # (log-variance -4), else as runs/fim: how much does the decoder read from a clean z?
    LONG="--preset small --batch-size 4 --val-every 100 --patience 6 --quiet --max-steps 1000 --max-minutes 90 --beta-warmup-steps 500"
    run ae $LONG $OLD --infill 0.5 --init-logvar -4 --beta-max 0 ;;
  narrow)  # the posterior starts narrow (log-variance -4 at initialisation), else as runs/fim
    LONG="--preset small --batch-size 4 --val-every 100 --patience 6 --quiet --max-steps 1000 --max-minutes 90 --beta-warmup-steps 500"
    run narrow $LONG $OLD --infill 0.5 --init-logvar -4 ;;
  bag)  # the note bag (z predicts which tokens each bar holds; their log-probabilities bias
    # the bar's logits), else as runs/fim; and the same with 32 free nats per bar; one thread each
    LONG="--preset small --batch-size 4 --val-every 100 --patience 6 --quiet --max-steps 1000 --max-minutes 90 --beta-warmup-steps 500"
    run bag $LONG $OLD --infill 0.5 --note-bag &
    run bag-fb50 $LONG --beta-max 1 --free-bits 0.5 --aux-weight 0 --word-dropout 0 --infill 0.5 --note-bag & wait ;;
  slots)  # z read as 8 slots of 8 dimensions through cross-attention, else as runs/fim
    LONG="--preset small --batch-size 4 --val-every 100 --patience 6 --quiet --max-steps 1000 --max-minutes 90 --beta-warmup-steps 500"
    run slots8 $LONG $OLD --infill 0.5 --latent-slots 8 ;;
  evaluate)  # held-out test split: 16 songs' first 8 bars, 16 prior samples, 100 windows;
    # two at a time (one per core)
    shift
    for r in "$@"; do
      $M evaluate runs/$r "$DATA" --split test --samples 16 --bars 8 --max-windows 100 --quiet \
         --json bench/results/eval_$r.json > bench/results/eval_$r.txt &
      while [ "$(jobs -rp | wc -l)" -ge 2 ]; do sleep 5; done
    done
    wait ;;
  table)
    .venv/bin/python bench/latent_table.py bench/results/eval_lat-*.json ;;
esac
