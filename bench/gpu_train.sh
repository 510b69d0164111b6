#!/usr/bin/env bash
# Train mtvae on a lent GPU machine: PyTorch and a GPU, no network, minutes of time.
#
# Here, once (needs the package index): the dependencies the GPU image lacks, as wheels for
# its Python (3.12), into .whl/ (git-ignored; carried with the working tree):
#     bash bench/gpu_train.sh fetch
# There (the working tree, .whl/ and a prepared DATA_DIR carried): install those wheels into
# /tmp/site if mtvae's imports fail, then train for MINUTES with checkpoints (--resume when
# RUN_DIR holds a run) and print tokens/s and the share of the GPU's bf16 peak (MFU):
#     bash bench/gpu_train.sh DATA_DIR MINUTES [RUN_DIR] [--preset base] [--batch-size 32] ...
# On a CPU, the same path end to end (tiny preset, fp32 peak; what the tests run):
#     bash bench/gpu_train.sh --dry-run DATA_DIR MINUTES [RUN_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python

if [ "${1:-}" = fetch ]; then
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    mkdir -p .whl
    # miditok 3.1 and symusic 0.6: the versions tested here; platformdirs: pure Python
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
        miditok==3.1.0 symusic==0.6.0 platformdirs==4.3.6
    ls -l .whl
    exit 0
fi

DRY=""
if [ "${1:-}" = --dry-run ]; then DRY=--dry-run; shift; fi
if [ $# -lt 2 ]; then
    sed -n '2,14p' "$0"; exit 2
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PY" -c "import miditok, symusic, platformdirs" 2>/dev/null; then
    if ! ls .whl/*.whl >/dev/null 2>&1; then
        echo "mtvae's dependencies are missing and there is no .whl/ to install them from" \
             "(run 'bash bench/gpu_train.sh fetch' where there is a network)" >&2
        exit 2
    fi
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
exec "$PY" bench/gpu_train.py $DRY "$@"
