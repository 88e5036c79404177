#!/usr/bin/env bash
# Fusion variants x modality dropout on a synthetic RAVDESS, then the missing-modality table.
# Usage: benchmarks/ravdess_fusion.sh DATA RUNS [EPOCHS]   (one CPU thread; about 25 min on a busy 2-core box)
set -euo pipefail
DATA=${1:?dataset root}; RUNS=${2:?runs folder}; EPOCHS=${3:-8}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
PY=${PYTHON:-python}
for fusion in ia it lt; do
  for dropout in softhard none; do
    run="$RUNS/${fusion}_${dropout}"
    [ -f "$run/checkpoint.pt" ] || $PY -m edgeaffect train ravdess --data "$DATA" --fusion "$fusion" \
        --dropout-mode "$dropout" --heads 1 --face-size 48 --frames 8 --epochs "$EPOCHS" --out "$run"
    $PY -m edgeaffect eval "$run" --corrupt audio=zeros,video=zeros
  done
done
