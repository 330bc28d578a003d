#!/usr/bin/env bash
# Zips the code, the params and the predictions the assignment collects into assignment5.zip.
set -euo pipefail
cd "$(dirname "$0")"
rm -f assignment5.zip
files=(src/*.py london_baseline.py)
# the 2021 and 2023 editions' files, then the 2024 edition's rope files
for f in vanilla.model.params vanilla.finetune.params perceiver.finetune.params synthesizer.finetune.params \
         vanilla.nopretrain.dev.predictions vanilla.nopretrain.test.predictions \
         vanilla.pretrain.dev.predictions vanilla.pretrain.test.predictions \
         perceiver.pretrain.dev.predictions perceiver.pretrain.test.predictions \
         synthesizer.pretrain.dev.predictions synthesizer.pretrain.test.predictions \
         rope.finetune.params rope.pretrain.dev.predictions rope.pretrain.test.predictions; do
  if [ -f "$f" ]; then files+=("$f"); else echo "collect_submission.sh: $f not found, left out" >&2; fi
done
python3 -c 'import sys, zipfile; z = zipfile.ZipFile("assignment5.zip", "w", zipfile.ZIP_DEFLATED); [z.write(f) for f in sys.argv[1:]]' "${files[@]}"
echo "wrote assignment5.zip (${#files[@]} files)"
