#!/usr/bin/env bash
# Runs the assignment's whole pipeline (the commands in README.md, "The full pipeline") for every variant:
# finetune without pretraining, then pretrain + finetune for vanilla, perceiver (m=64),
# synthesizer and rope, each evaluated on the dev and test questions. Predictions land at the top level
# under the assignment's names; logs/<stage>.log keeps each command's output and logs/times.txt
# its wall time. Extra arguments go to every run.py call (e.g. --max_epochs 1 for a smoke run,
# --tf32 on a GPU as for REPORT.md).
#   SEEDS="1 2"   also pretrain and finetune vanilla with these seeds (predictions in logs/)
#   PARALLEL=1    run the four variants side by side, then the extra seeds side by side (one
#                 GPU is far from busy with one of them); wall times are then those of a shared GPU
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
EXTRA=("$@")
mkdir -p logs

stage() {  # stage NAME ARGS...: run `run.py ARGS`, keep its output and its wall time
  local name=$1; shift
  local start=$(date +%s%N)
  "$PY" src/run.py "$@" "${EXTRA[@]}" > "logs/$name.log" 2>&1
  local rc=$? ms=$(( ($(date +%s%N) - start) / 1000000 ))
  printf '%s %d.%d s rc=%d %s\n' "$name" $((ms / 1000)) $((ms % 1000 / 100)) "$rc" \
    "$(grep -h '^Correct' "logs/$name.log")" | tee -a logs/times.txt
}

evaluate_both() {  # evaluate_both VARIANT FLAGS PARAMS PREFIX TAG
  local variant=$1 flags=$2 params=$3 prefix=$4 tag=$5
  stage "$tag.evaluate.dev" evaluate "$variant" wiki.txt $flags --reading_params_path "$params" \
    --eval_corpus_path birth_dev.tsv --outputs_path "$prefix.dev.predictions"
  stage "$tag.evaluate.test" evaluate "$variant" wiki.txt $flags --reading_params_path "$params" \
    --eval_corpus_path birth_test_inputs.tsv --outputs_path "$prefix.test.predictions"
}

pretrained() {  # pretrained VARIANT SEED FLAGS: pretrain, finetune, evaluate
  local variant=$1 seed=$2 flags=$3 tag=$1 prefix=$1.pretrain
  if [ "$seed" != 0 ]; then
    tag=$variant.seed$seed prefix=logs/$variant.seed$seed flags="$flags --seed $seed --tb_expt_name seed$seed"
  fi
  stage "$tag.pretrain" pretrain "$variant" wiki.txt $flags --writing_params_path "$tag.pretrain.params"
  stage "$tag.finetune" finetune "$variant" wiki.txt $flags --reading_params_path "$tag.pretrain.params" \
    --writing_params_path "$tag.finetune.params" --finetune_corpus_path birth_places_train.tsv
  evaluate_both "$variant" "$flags" "$tag.finetune.params" "$prefix" "$tag"
}

# 1. vanilla without pretraining
stage vanilla.nopretrain.finetune finetune vanilla wiki.txt --writing_params_path vanilla.model.params \
  --finetune_corpus_path birth_places_train.tsv --tb_expt_name nopretrain
evaluate_both vanilla "" vanilla.model.params vanilla.nopretrain vanilla.nopretrain
side_by_side() {  # side_by_side "VARIANT SEED FLAGS"...: one pipeline each, at once if PARALLEL=1
  for run in "$@"; do
    read -r variant seed flags <<< "$run"
    if [ "${PARALLEL:-0}" = 1 ]; then pretrained "$variant" "$seed" "${flags:-}" & else pretrained "$variant" "$seed" "${flags:-}"; fi
  done
  wait
}

# 2.-5. vanilla, the perceiver (m=64), the synthesizer and rope; then the extra vanilla seeds, so
# that a run cut short loses the seeds first
side_by_side "vanilla 0" "perceiver 0 --bottleneck_dim 64" "synthesizer 0" "rope 0"
seeds=()
for seed in ${SEEDS:-}; do seeds+=("vanilla $seed"); done
side_by_side "${seeds[@]}"
