#!/usr/bin/env bash
# Every GPU measurement that README.md "Speed" and REPORT.md's bfloat16 section quote, in one
# command meant to take under 9 minutes on one H100/H200 (an estimate: not yet run on one). Each
# result lands in OUT (default report/gpu) as soon as it exists, so that a rental that ends early
# keeps what finished:
#   1. benchmarks/speed.py, eager, every variant in TF32 and bfloat16          speed_eager.log
#   2. a whole vanilla pretraining, compiled, TF32, timed as a process, with
#      TORCH_LOGS=perf_hints telling whether CUDA graphs were skipped           pretrain_tf32.log
#   3. the bfloat16 check: vanilla pretraining, finetuning and dev evaluation
#      in bfloat16, compiled, to compare with the float32 seeds' dev accuracy  bf16_*.log, runs/
#   4. benchmarks/speed.py, compiled, vanilla and rope in TF32 and bfloat16     speed_compiled.log
# and benchmarks/results/<GPU>.json with every figure. A CPU dry run of the whole script, every
# step cut to a few steps: DEVICE=cpu QUICK=1 bash scripts/gpu_check.sh. On a machine whose
# system Python has torch, tqdm and tensorboard (as the lent GPU machines do), with the data
# files at the repository root: PYTHON=python3 OUT=some/folder bash scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-report/gpu}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT"
if [ -n "${QUICK:-}" ]; then
    # its figures mean nothing: keep them out of benchmarks/results/
    BENCH=(--batch_size 8 --train_steps 2 --rounds 1 --baseline_questions 2 --pretrain_epochs 1
           --json "$OUT/dry_run.json")
    EPOCHS=(--max_epochs 1)
else
    BENCH=(--baseline_questions 50)
    EPOCHS=()
fi
save_json() { cp benchmarks/results/*.json "$OUT/"; }
speed() { "$PYTHON" benchmarks/speed.py --device "$DEVICE" "${BENCH[@]}" "$@"; }
run() { "$PYTHON" src/run.py "$@" --device "$DEVICE" "${EPOCHS[@]}"; }

speed --precisions tf32,bf16 --modes eager 2>&1 | tee "$OUT/speed_eager.log"
save_json

TORCH_LOGS=perf_hints speed --variants vanilla --precisions tf32 --modes compiled --pretrain \
    --baseline_questions 0 2>&1 | tee "$OUT/pretrain_tf32.log"
save_json

run pretrain vanilla wiki.txt --precision bf16 --compile --writing_params_path "$OUT/vanilla.bf16.pretrain.params" \
    --tb_expt_name bf16 2>&1 | tee "$OUT/bf16_pretrain.log"
run finetune vanilla wiki.txt --precision bf16 --compile --reading_params_path "$OUT/vanilla.bf16.pretrain.params" \
    --writing_params_path "$OUT/vanilla.bf16.finetune.params" --finetune_corpus_path birth_places_train.tsv \
    --tb_expt_name bf16 2>&1 | tee "$OUT/bf16_finetune.log"
"$PYTHON" src/run.py evaluate vanilla wiki.txt --device "$DEVICE" \
    --reading_params_path "$OUT/vanilla.bf16.finetune.params" --eval_corpus_path birth_dev.tsv \
    --outputs_path "$OUT/vanilla.pretrain.bf16.seed0.dev.predictions" 2>&1 | tee "$OUT/bf16_evaluate.log"
rm -f "$OUT"/*.params  # 13 MB each: the predictions and logs are the record
mkdir -p "$OUT/runs" && cp -r expt/pretrain/bf16_* expt/finetune/bf16_* "$OUT/runs/"

speed --variants vanilla,rope --precisions tf32,bf16 --modes compiled --baseline_questions 0 2>&1 \
    | tee "$OUT/speed_compiled.log"
save_json
