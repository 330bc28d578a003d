#!/usr/bin/env bash
# Regenerates REPORT.md's figures in report/: the training-loss curves from TensorBoard logs (by
# default those of the reported runs, kept in report/runs; pass expt for your own runs) and the
# measured complexity study (a few minutes on a CPU).
#   bash scripts/report_figures.sh [EXPT_DIR]
set -eu
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
"$PY" scripts/plot_losses.py "${1:-report/runs}" report/losses.png
"$PY" scripts/complexity.py report/complexity.png
