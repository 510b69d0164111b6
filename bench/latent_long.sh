#!/usr/bin/env bash
# Issue #10 at the issue's own budget: 2000 steps of `small` (batch 4 x 512 tokens, the same
# batches as every latent run), one thread each, two at a time, on the re-barred data with FILL:
#   long2k-base: today's defaults (as runs/fim, β at its maximum from step 1000)
#   long2k-ae:   the probe: β 0 and a narrow posterior (as runs/lat-ae): an upper bound on
#                what any KL setting can make the decoder read at this budget
# The last weights at steps 500, 1000 and 1500 are kept as runs/<run>-s<step> (a learning
# curve for bench/latent_curve.py). Patience is off: every run takes its 2000 steps.
# Then `evaluate`: `mtvae evaluate` of the two final models (the probe's last weights, as
# runs/long2k-ae-s2000: its best ELBO is early, as β 0 lets the KL grow), the latent metrics
# of every snapshot (bench/latent_curve.py) and what the decoder reads (bench/latent_use.py).
# Usage: DATA=data/pn2 bash bench/latent_long.sh train|train-kl128|train-kl128-pair|train-kl128-drop|train-pn3|evaluate
set -euo pipefail
cd "$(dirname "$0")/.."
M=.venv/bin/mtvae
DATA=${DATA:-data/pn2}
[ -f "$DATA/meta.json" ] || $M prepare ../shared/data/pop909 ../shared/data/nottingham --out "$DATA" --quiet
export OMP_NUM_THREADS=1
mkdir -p logs bench/results
LONG="--preset small --batch-size 4 --val-every 100 --patience 1000 --quiet --max-steps 2000 --max-minutes 170 --beta-warmup-steps 1000"
OLD="--beta-max 1 --free-bits 0.25 --aux-weight 0 --word-dropout 0 --infill 0.5"
snapshot() {  # runs/RUN-sSTEP: the run with its last weights as model.safetensors
  rm -rf "runs/$1-s$2"; mkdir -p "runs/$1-s$2"
  cp "runs/$1/config.json" "runs/$1/tokenizer.json" "runs/$1-s$2/"
  cp "runs/$1/last.safetensors" "runs/$1-s$2/model.safetensors"; }
snapshots() {  # a snapshot at steps 500, 1000 and 1500, once each is validated (and saved)
  for s in 500 1000 1500; do
    until grep -q "^$s,valid" "runs/$1/metrics.csv" 2>/dev/null; do sleep 20; done
    sleep 5; snapshot "$1" "$s"
  done; }
run() { name=$1; shift; $M train "$DATA" --out runs/$name $LONG $OLD "$@" > logs/$name.log 2>&1; }
case "${1:-train}" in
  train)
    run long2k-base & snapshots long2k-base &
    run long2k-ae --init-logvar -4 --beta-max 0 & snapshots long2k-ae &
    wait ;;
  train-kl128)  # a VAE with a KL target of 128 nats per bar (free bits 2 nats per dimension,
    # β 1 above it) and the probe's narrow start: the probe's information, with a prior
    run long2k-kl128 --free-bits 2 --init-logvar -4 & snapshots long2k-kl128 & wait ;;
  train-kl128-pair)  # the KL-128 VAE beside the same with a learning rate of 1e-3 (3e-4):
    # whether the decoder starts to read z sooner when every step goes further
    run long2k-kl128 --free-bits 2 --init-logvar -4 & snapshots long2k-kl128 &
    run long2k-kl128lr --free-bits 2 --init-logvar -4 --lr 1e-3 & snapshots long2k-kl128lr &
    wait ;;
  train-kl128-drop)  # session 9: the KL-128 VAE with word dropout 0.3 (the decoder's input
    # tokens masked, so the bar's own tokens predict less and z more) beside the same with
    # context dropout 0.5 (half the bars decoded without the bars before them)
    run long2k-kl128wd --free-bits 2 --init-logvar -4 --prior-steps 0 --word-dropout 0.3 &
    snapshots long2k-kl128wd &
    run long2k-kl128cd --free-bits 2 --init-logvar -4 --prior-steps 0 --context-dropout 0.5 &
    snapshots long2k-kl128cd &
    wait ;;
  train-pn3)  # session 10, DATA=data/pn3 (prepared with attribute classes that are all
    # populated): the default KL-128 VAE, beside the same with latent slots (each bar's z read
    # as 8 slots through cross-attention besides in-attention; session 6 tried it at 16 nats)
    run long2k-pn3 --free-bits 2 --init-logvar -4 & snapshots long2k-pn3 &
    run long2k-pn3slots --free-bits 2 --init-logvar -4 --prior-steps 0 --latent-slots 8 &
    snapshots long2k-pn3slots &
    wait ;;
  evaluate)
    snapshot long2k-base 2000; snapshot long2k-ae 2000
    .venv/bin/python bench/latent_curve.py runs/long2k-base-s{500,1000,1500,2000} --data "$DATA" \
      --json bench/results/latent_curve_base.json > logs/curve-base.txt
    .venv/bin/python bench/latent_curve.py runs/long2k-ae-s{500,1000,1500,2000} --data "$DATA" \
      --json bench/results/latent_curve_ae.json > logs/curve-ae.txt
    .venv/bin/python bench/latent_use.py runs/long2k-{base,ae}-s{500,1000,1500,2000} --data "$DATA" \
      --windows 40 --json bench/results/latent_use_2k.json > logs/use-2k.txt
    for r in long2k-base-s2000 long2k-ae-s2000; do  # one core: the other may train
      $M evaluate runs/$r "$DATA" --split test --samples 16 --bars 8 --max-windows 100 --quiet \
         --json bench/results/eval_$r.json > bench/results/eval_$r.txt
    done ;;
esac
