#!/usr/bin/env bash
# Issue #10, session 10: score a 2000-step run of `DATA=data/pn3 bash bench/latent_long.sh
# train-pn3` (data/pn3: prepared with attribute classes that are all populated). One thread:
# the other core may train. For RUN: its last weights as runs/RUN-s2000; the latent metrics
# at guidance 0 and 0.5 (bench/latent_curve.py); with --prior a learnt prior (train's own
# when its best weights are the last, else `mtvae prior`) and 128 prior samples at the default
# guidance 0.5 (bench/coherence.py); attribute control on 256 bars per attribute at guidance 0
# and 0.5 (bench/guidance_control.py; latents from the learnt prior where there is one, else
# N(0, I)); the learning curve of the snapshots at guidance 0 (as session 7's); what the
# decoder reads (bench/latent_use.py); with --prior `mtvae evaluate`.
# Usage: DATA=data/pn3 bash bench/latent_pn3.sh [--prior] RUN
set -euo pipefail
cd "$(dirname "$0")/.."
M=.venv/bin/mtvae
PY=.venv/bin/python
DATA=${DATA:-data/pn3}
export OMP_NUM_THREADS=1
mkdir -p logs bench/results
prior=0
if [ "${1:-}" = --prior ]; then prior=1; shift; fi
name=$1
r=$name-s2000
rm -rf "runs/$r"; mkdir -p "runs/$r"
cp "runs/$name/config.json" "runs/$name/tokenizer.json" "runs/$r/"
cp "runs/$name/last.safetensors" "runs/$r/model.safetensors"
$PY bench/latent_curve.py "runs/$r" --data "$DATA" --guidance 0 0.5 \
  --json "bench/results/latent_curve_$r.json" > "logs/curve-$r.txt"
if [ $prior = 1 ]; then
  if [ -f "runs/$name/prior.safetensors" ] && cmp -s "runs/$name/model.safetensors" "runs/$name/last.safetensors"
  then cp "runs/$name/prior.safetensors" "runs/$r/"  # train's own prior, fitted to these weights
  else $M prior "runs/$r" "$DATA" --quiet > "logs/prior-$r.txt"; fi
  $PY bench/coherence.py "runs/$r" --data "$DATA" --values 0 --only-learnt --samples 128 \
    --guidance 0.5 --json "bench/results/prior_128_$r.json" > "logs/coherence-$r.txt"
fi
# control draws its latents as the model samples: from the learnt prior where one was fitted
$PY bench/guidance_control.py "runs/$r" --per-class 4 --guidance 0 0.5 \
  --json "bench/results/guidance_control_$r.json" > "logs/control-$r.txt"
$PY bench/latent_curve.py runs/$name-s{500,1000,1500} --data "$DATA" --guidance 0 \
  --json "bench/results/latent_curve_$name.json" > "logs/curve-$name.txt"
$PY bench/latent_use.py "runs/$r" --data "$DATA" --windows 40 \
  --json "bench/results/latent_use_$r.json" > "logs/use-$r.txt"
if [ $prior = 1 ]; then
  $M evaluate "runs/$r" "$DATA" --split test --samples 16 --bars 8 --max-windows 100 --quiet \
     --json "bench/results/eval_$r.json" > "bench/results/eval_$r.txt"
fi
