#!/usr/bin/env bash
# Issue #10, session 8: the 2000-step KL-target runs of bench/latent_long.sh with a learnt prior.
# For each RUN given (a run of latent_long.sh, e.g. long2k-kl128): its last weights as
# runs/RUN-s2000, the latent metrics (bench/latent_curve.py, bench/latent_use.py), a learnt
# prior fitted to its latents (`mtvae prior`), `mtvae evaluate` (prior samples and control
# drawn from the learnt prior) and prior samples from N(0, I), coherent N(0, I) and the learnt
# prior side by side (bench/coherence.py). One thread: the other core may train.
# The latent metrics are taken with latent guidance 0 and 0.5, `mtvae evaluate` with the
# default guidance (0.5; session 9); SKIP_COHERENCE=1 leaves out bench/coherence.py.
# Usage: DATA=data/pn2 bash bench/latent_prior.sh RUN...
#        DATA=data/pn2 bash bench/latent_prior.sh --fit-only RUN-DIR...   (prior + coherence)
set -euo pipefail
cd "$(dirname "$0")/.."
M=.venv/bin/mtvae
PY=.venv/bin/python
DATA=${DATA:-data/pn2}
export OMP_NUM_THREADS=1
mkdir -p logs bench/results
fit_only=0
if [ "${1:-}" = --fit-only ]; then fit_only=1; shift; fi
for name in "$@"; do
  if [ $fit_only = 1 ]; then r=$(basename "$name"); else
    r=$name-s2000
    rm -rf "runs/$r"; mkdir -p "runs/$r"
    cp "runs/$name/config.json" "runs/$name/tokenizer.json" "runs/$r/"
    cp "runs/$name/last.safetensors" "runs/$r/model.safetensors"
    $PY bench/latent_curve.py "runs/$r" --data "$DATA" --guidance 0 0.5 \
      --json "bench/results/latent_curve_$r.json" > "logs/curve-$r.txt"
    $PY bench/latent_use.py "runs/$r" --data "$DATA" --windows 40 --json "bench/results/latent_use_$r.json" > "logs/use-$r.txt"
  fi
  $M prior "runs/$r" "$DATA" --quiet > "logs/prior-$r.txt"
  [ "${SKIP_COHERENCE:-0}" = 1 ] ||
    $PY bench/coherence.py "runs/$r" --data "$DATA" --values 0 0.9 --json "bench/results/coherence_$r.json" > "logs/coherence-$r.txt"
  if [ $fit_only = 0 ]; then
    $M evaluate "runs/$r" "$DATA" --split test --samples 16 --bars 8 --max-windows 100 --quiet \
       --json "bench/results/eval_$r.json" > "bench/results/eval_$r.txt"
  fi
done
