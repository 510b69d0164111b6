#!/usr/bin/env bash
# Issue #10, session 8: the KL-128 VAE of bench/latent_long.sh (free bits 2 nats per dimension,
# narrow start) with the note bag (--note-bag: z predicts which tokens its bar holds, and that
# prediction is added to the bar's output logits), 2000 steps, one thread, the same batches.
# At a 16-nat KL the note bag had little to say (docs/RESULTS.md, session 6); with 128 nats in
# z it has the bar's notes. Snapshots at steps 500, 1000, 1500 as runs/long2k-kl128bag-sSTEP.
# Then: DATA=data/pn2 bash bench/latent_prior.sh long2k-kl128bag
# Usage: DATA=data/pn2 bash bench/latent_bag.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-data/pn2}
export OMP_NUM_THREADS=1
mkdir -p logs
name=long2k-kl128bag
snapshots() {
  for s in 500 1000 1500; do
    until grep -q "^$s,valid" "runs/$name/metrics.csv" 2>/dev/null; do sleep 20; done
    sleep 5; rm -rf "runs/$name-s$s"; mkdir -p "runs/$name-s$s"
    cp "runs/$name/config.json" "runs/$name/tokenizer.json" "runs/$name-s$s/"
    cp "runs/$name/last.safetensors" "runs/$name-s$s/model.safetensors"
  done; }
.venv/bin/mtvae train "$DATA" --out runs/$name --preset small --batch-size 4 --val-every 100 \
  --patience 1000 --quiet --max-steps 2000 --max-minutes 170 --beta-warmup-steps 1000 \
  --beta-max 1 --aux-weight 0 --word-dropout 0 --infill 0.5 \
  --free-bits 2 --init-logvar -4 --note-bag > logs/$name.log 2>&1 &
snapshots &
wait
