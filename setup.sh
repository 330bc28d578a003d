#!/usr/bin/env bash
# Sets up a fresh machine: .venv with the pinned requirements, and the data files at the top level.
# The data is copied from $DATA_DIR (default ../shared/data) unless it is already here.
set -euo pipefail
cd "$(dirname "$0")"
DATA_DIR=${DATA_DIR:-../shared/data}

python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt

for f in wiki.txt birth_places_train.tsv birth_dev.tsv birth_test_inputs.tsv input.txt; do
  if [ ! -f "$f" ]; then
    if [ ! -f "$DATA_DIR/$f" ]; then
      echo "setup.sh: $f is missing: put the assignment's data files in $DATA_DIR (or set DATA_DIR) and rerun" >&2
      exit 1
    fi
    cp "$DATA_DIR/$f" "$f"
  fi
done
echo "setup.sh: ready. Run the tests with: .venv/bin/python -m pytest tests"
