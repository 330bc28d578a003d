#!/usr/bin/env bash
# Regenerates REPORT.md's figures in report/: the training-loss curves from the TensorBoard logs
# that the runs wrote under expt/, and the measured complexity study (a few minutes on a CPU).
set -eu
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
"$PY" scripts/plot_losses.py expt report/losses.png
"$PY" scripts/complexity.py report/complexity.png
