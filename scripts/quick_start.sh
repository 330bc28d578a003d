#!/usr/bin/env bash
# The quick pipeline, a few minutes on a CPU: finetune vanilla from random weights for 2 epochs,
# answer the 500 dev questions, and end with the accuracy line. It writes only names that git
# ignores (quick.model.params, quick.dev.predictions), never the assignment's committed outputs.
# Extra arguments go to both commands, e.g. `bash scripts/quick_start.sh --device cuda`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
"$PYTHON" src/run.py finetune vanilla wiki.txt --writing_params_path quick.model.params \
    --finetune_corpus_path birth_places_train.tsv --max_epochs 2 "$@"
"$PYTHON" src/run.py evaluate vanilla wiki.txt --reading_params_path quick.model.params \
    --eval_corpus_path birth_dev.tsv --outputs_path quick.dev.predictions "$@"
