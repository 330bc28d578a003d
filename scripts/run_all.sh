#!/usr/bin/env bash
# Every run of the results (REPORT.md): vanilla finetuned without pretraining, and pretrain +
# finetune for vanilla, the perceiver (m=64), the synthesizer and rope, each with seeds 0, 1 and 2,
# all seeds 0 first so that a rental that ends early has every variant. Each run ends with its dev
# predictions at report/<run>.seed<N>.dev.predictions (seed 0's dev and test predictions and params
# also at the top level under the assignment's names), its TensorBoard logs in report/runs/, and
# report/analysis.md remade from every predictions file there (scripts/analyze_predictions.py).
# logs/<stage>.log keeps each command's output (of every try) and logs/times.txt its wall time and
# accuracy.
#
# Ctrl-C stops it: the commands in progress save their checkpoints and nothing new starts.
# Running it again goes on where it stopped: a stage that finished (logs/<stage>.done) is skipped,
# one that was interrupted resumes from its checkpoint. Delete logs/ to start over.
#   bash scripts/run_all.sh [run.py options for every command, e.g. --device cpu]
#   JOBS=4      runs side by side (one GPU is far from busy with one of them)
#   BF16=1      also each variant's seed 0 in bfloat16 (runs <variant>.pretrain.bf16)
#   RUNS="rope.pretrain.seed0 vanilla.nopretrain.seed2"   only these runs, in this order
#   OUT=DIR     write everything under DIR instead of the repository (e.g. for a smoke run with
#               --max_epochs 1)
set -u
# PYTHON and OUT, when paths, are relative to where the script was called from
PY=${PYTHON:-python}
[[ $PY == */* ]] && PY=$(realpath -s "$PY")
OUT=$(realpath -sm "${OUT:-$(dirname "$0")/..}")
cd "$(dirname "$0")/.."
REPO=$PWD
EXTRA=("$@")
if [ -z "${RUNS:-}" ]; then
  RUNS=""
  for seed in 0 1 2; do
    for run in vanilla.nopretrain vanilla.pretrain perceiver.pretrain synthesizer.pretrain rope.pretrain; do
      RUNS+=" $run.seed$seed"
    done
  done
  if [ "${BF16:-0}" = 1 ]; then
    for variant in vanilla perceiver synthesizer rope; do RUNS+=" $variant.pretrain.bf16.seed0"; done
  fi
fi
for tag in $RUNS; do
  if ! [[ $tag =~ ^(vanilla\.nopretrain|(vanilla|perceiver|synthesizer|rope)\.pretrain(\.bf16)?)\.seed[0-9]+$ ]]; then
    echo "run_all.sh: RUNS: $tag is not a run (<variant>.pretrain[.bf16].seed<N> or vanilla.nopretrain.seed<N>)" >&2
    exit 2
  fi
done
mkdir -p "$OUT/logs" "$OUT/report/runs" && cd "$OUT" || exit 2

shopt -s nullglob

stage() {  # stage NAME PARAMS ARGS...: `run.py ARGS` with the run's flags, writing PARAMS (or ""),
           # unless logs/NAME.done says that it finished; resumed from PARAMS' checkpoint if one is left
  local name=$1 params=$2; shift 2
  [ -f "logs/$name.done" ] && return 0
  local resume=()
  [ -n "$params" ] && [ -f "$params.ckpt" ] && resume=(--resume)
  local start=$(date +%s%N)
  "$PY" "$REPO/src/run.py" "$@" "$REPO/wiki.txt" "${EXTRA[@]}" "${flags[@]}" "${resume[@]}" >> "logs/$name.log" 2>&1
  local rc=$? ms=$(( ($(date +%s%N) - start) / 1000000 ))
  printf '%s %d.%d s rc=%d %s%s\n' "$name" $((ms / 1000)) $((ms % 1000 / 100)) "$rc" "${resume[*]:+resumed }" \
    "$(grep -h '^Correct' "logs/$name.log" | tail -1)" >> logs/times.txt
  [ "$rc" = 0 ] && touch "logs/$name.done"
  return "$rc"
}

one_run() {  # one_run RUN.seedN: train, evaluate, keep the predictions and the TensorBoard logs
  local tag=$1 run=${1%.seed*} seed=${1##*.seed}
  local variant=${run%%.*} flags=(--seed "$seed") tb=seed$seed
  [ "$variant" = perceiver ] && flags+=(--bottleneck_dim 64)
  [ "${run##*.}" = bf16 ] && flags+=(--precision bf16) tb=bf16_seed$seed
  [ "$run" = vanilla.nopretrain ] && tb=nopretrain_seed$seed
  # seed 0 in the default precision writes the assignment's files; the other runs, <tag>.*
  local handout=$([ "$tag" = "$run.seed0" ] && [ "${run##*.}" != bf16 ] && echo yes)
  local pretrained=$tag.pretrain.params finetuned=$tag.finetune.params
  [ "$handout" ] && pretrained=$variant.pretrain.params finetuned=$variant.finetune.params
  local data=(--finetune_corpus_path "$REPO/birth_places_train.tsv" --tb_expt_name "$tb")
  if [ "$run" = vanilla.nopretrain ]; then
    [ "$handout" ] && finetuned=vanilla.model.params
    stage "$tag.finetune" "$finetuned" finetune vanilla --writing_params_path "$finetuned" "${data[@]}" || return
  else
    stage "$tag.pretrain" "$pretrained" pretrain "$variant" --writing_params_path "$pretrained" \
      --tb_expt_name "$tb" || return
    stage "$tag.finetune" "$finetuned" finetune "$variant" --reading_params_path "$pretrained" \
      --writing_params_path "$finetuned" "${data[@]}" || return
  fi
  stage "$tag.evaluate.dev" "" evaluate "$variant" --reading_params_path "$finetuned" \
    --eval_corpus_path "$REPO/birth_dev.tsv" --outputs_path "report/$tag.dev.predictions" || return
  if [ "$handout" ]; then
    cp "report/$tag.dev.predictions" "$run.dev.predictions"
    stage "$tag.evaluate.test" "" evaluate "$variant" --reading_params_path "$finetuned" \
      --eval_corpus_path "$REPO/birth_test_inputs.tsv" --outputs_path "$run.test.predictions" || return
  fi
  local dir
  for dir in expt/*/"${tb}_${variant}"_*; do
    mkdir -p "report/runs/${dir#expt/}" && cp -r "$dir/." "report/runs/${dir#expt/}/"
  done
  "$PY" "$REPO/scripts/analyze_predictions.py" --dev "$(realpath --relative-to=. "$REPO/birth_dev.tsv")" \
    --wiki "$REPO/wiki.txt" --output report/analysis.md > /dev/null
}

failed=0 interrupted=""
# Ctrl-C reaches run.py too, which saves its checkpoint and stops: start nothing after it
trap 'interrupted=1' INT
for tag in $RUNS; do
  if [ "${JOBS:-1}" -gt 1 ]; then
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || failed=1; done
  fi
  [ -z "$interrupted" ] || { failed=1; break; }
  if [ "${JOBS:-1}" -gt 1 ]; then one_run "$tag" & else one_run "$tag" || failed=1; fi
done
while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n || failed=1; done
cat logs/times.txt
exit "$failed"
