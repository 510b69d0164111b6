#!/bin/bash
# The shipped model (`pretrained`), step by step: every command behind docs/RESULTS.md's
# "The shipped model" and src/mtvae/pretrained/MODEL_CARD.md. Long steps run for hours across
# sessions (`--resume`); runs live in runs/ (git-ignored). One core per job: two PyTorch
# processes that each use every core slow each other down many times over.
#
#   bash bench/ship.sh prepare | shapes | train [MINUTES] [THREADS] | export [DIR] | evaluate [MODEL]
#                      | checkpoints [NAME=FOLDER[:last] ...] [OPTIONS] | table | card | finetune
set -e
cd "$(dirname "$0")/.."
M=".venv/bin/python -m mtvae"
one() { OMP_NUM_THREADS=1 taskset -c "$1" "${@:2}"; }

case "${1:-}" in
prepare)  # licences: docs/RESULTS.md; Aird's Airs stays unseen (the fine-tune and the demo)
  $M prepare pop=../shared/data/pop909 chorale=music21:bach folk=music21:oneills,ryans --out data/ship
  $M prepare airs=music21:airdsAirs --max-files 400 --out data/airs ;;
shapes)  # 50 CPU-minutes each, one core each, the long run's schedule; then 256 test windows
  # (--genre-dropout 0 here and in finetune: as measured, before the option existed)
  for spec in "small 0" "compact 1"; do set -- $spec
    one "$2" $M train data/ship --out "runs/cmp_$1" --preset "$1" --segments 8 --batch-size 4 \
      --max-steps 12000 --max-minutes 50 --val-every 100 --prior-steps 0 --seed 0 --genre-dropout 0 --quiet &
  done; wait
  one 1 $M train data/ship --out runs/cmp_nocomp --preset compact --no-compression --segments 8 \
    --batch-size 4 --max-steps 12000 --max-minutes 50 --val-every 100 --prior-steps 0 --seed 0 \
    --genre-dropout 0 --quiet
  .venv/bin/python bench/train_report.py runs/cmp_small runs/cmp_compact runs/cmp_nocomp \
    --at-step 300 --json bench/results/shape_train.json
  .venv/bin/python bench/memory_position.py runs/cmp_compact runs/cmp_nocomp --data data/ship \
    --genre pop --length 4096 --json bench/results/memory_position.json ;;
train)  # the shipped run continues runs/cmp_compact (a copy made once: cp -a runs/cmp_compact runs/ship).
  # Its cosine schedule was set for 12,000 steps, more than four sessions of this CPU reach; from step
  # 2,661 (third session) it ends at 7,500, so that the learning rate has decayed by the fourth session's end.
  # From step 2,800 a tenth of the windows are given the genre `unknown` (--genre-dropout, the
  # default of new runs), so that what reconstruct/transfer/continue/infill use without --genre is
  # trained. `kill PID` (SIGTERM) or Ctrl-C checkpoints the step in progress and stops.
  [ -d runs/ship ] || cp -a runs/cmp_compact runs/ship
  OMP_NUM_THREADS=${3:-2} $M train data/ship --out runs/ship --resume --max-minutes "${2:-60}" \
    --max-steps 7500 --genre-dropout 0.1 --patience 30 --quiet ;;
export)  # [DIR]: a candidate folder to evaluate first (default: the shipped folder itself)
  OMP_NUM_THREADS=2 $M prior runs/ship data/ship --quiet
  rm -rf "${2:-src/mtvae/pretrained}" && $M export runs/ship "${2:-src/mtvae/pretrained}" ;;
evaluate)  # [MODEL]: each corpus's test split, prior samples of its genre; three one-thread
  # processes share the two cores (each ~18-21 CPU-minutes; 36 minutes in all beside the
  # checkpoint comparison, against 38 for pop on one core and chorale then folk on the other)
  model=${2:-pretrained}
  ev() { OMP_NUM_THREADS=1 $M evaluate "$model" data/ship --genre "$1" \
           --json "bench/results/ship_eval_$1.json" --quiet; }
  ev pop & ev chorale & ev folk & wait ;;
checkpoints)  # [NAME=FOLDER[:last] ...] [--as-genre unknown] [--json FILE]: valid ELBO of
  # checkpoints side by side, up to 100 windows per genre (the stopping rule); runs/ck2661 holds
  # the run's step-2,661 weights (config, tokenizer, model), kept to compare with
  shift; [ $# -gt 0 ] || set -- shipped=src/mtvae/pretrained
  one 0 .venv/bin/python bench/checkpoint_elbo.py --data data/ship --max-windows 100 \
    --json bench/results/ship_checkpoints.json "$@" ;;
table)  # docs/RESULTS.md's table of the shipped model, from the evaluate JSON
  .venv/bin/python bench/model_card.py --train-run runs/ship --results-table \
    --eval pop=bench/results/ship_eval_pop.json --eval chorale=bench/results/ship_eval_chorale.json \
    --eval folk=bench/results/ship_eval_folk.json ;;
card)  # the model card beside the shipped weights (figures from the run's metrics and the evaluate JSON)
  .venv/bin/python bench/model_card.py --train-run runs/ship --model src/mtvae/pretrained \
    --eval pop=bench/results/ship_eval_pop.json --eval chorale=bench/results/ship_eval_chorale.json \
    --eval folk=bench/results/ship_eval_folk.json --curve docs/img/ship_curve.png \
    --training-note "The cosine schedule was first set for 12,000 steps; from step 2,661 it ends at 7,500, what four sessions of this CPU reach (the dashed line of the curve)." \
    --training-note "From step 2,800 a tenth of the training windows, and of the learnt prior's, are given the genre \`unknown\` (--genre-dropout 0.1)." \
    --training-note "Stopped at step 7,000 after four working sessions of the development machine (the limit set for it), not because it had flattened: on the whole valid split the weights gained 0.054 bits per token over the last session's first 1.5 hours (step 5,002: 4.647, these: 4.593), ~0.035 bits per hour, with the learning rate at its floor (0.1 of the peak)." \
    --weakness "POP909 is reconstructed worse than the rest (greedy chroma / groove / note F1 against the MIDI files 0.753 / 0.488 / 0.091: harmony is followed, rhythm and notes less; a 2,000-step \`small\` POP909-only model reached 0.58 / 0.66 / 0.16) and its prior samples match pop statistics least (lowest overlap 0.142). Sample at the default temperature for pop." \
    --weakness "Without --genre, reconstruct, transfer, continue and infill condition on the genre \`unknown\`, trained on a tenth of the windows from step 2,800: on the valid split it costs 0.011 bits per token (4.604 against 4.593) against each song's own genre. Pass --genre when you know it." ;;
finetune)  # 10 CPU-minutes on Aird's Airs from the shipped model, and from scratch
  for spec in "pre 0" "scratch 1"; do set -- $spec
    if [ "$1" = pre ]; then from="--from pretrained"; else from="--preset compact --segments 8 --batch-size 4"; fi
    ( one "$2" $M train data/airs --out "runs/ft_$1" $from --max-minutes 10 --val-every 25 \
        --prior-steps 0 --seed 0 --genre-dropout 0 --quiet
      one "$2" $M evaluate "runs/ft_$1" data/airs --genre airs --samples 8 \
        --json "bench/results/finetune_$1.json" --quiet
      one "$2" $M sample "runs/ft_$1" --genre airs --bars 8 --n 2 --seed 0 --out "out/ft_$1" ) &
  done; wait ;;
*) sed -n 2,8p "$0"; exit 2 ;;
esac
