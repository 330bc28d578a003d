#!/usr/bin/env bash
# Every GPU measurement that README.md "Speed" and REPORT.md's bfloat16 section quote, in one
# command meant to take under 9 minutes on one H100/H200 (an estimate: not yet run on one). Each
# step's results land in RESULTS (default report/gpu) as soon as it ends, and a step that fails
# does not stop the next, so that a rental that ends early keeps what finished:
#   1. benchmarks/speed.py, eager, every variant in TF32 and bfloat16          speed_eager.log
#   2. a whole vanilla pretraining, compiled, TF32, timed as a process, with
#      TORCH_LOGS=perf_hints telling whether CUDA graphs were skipped           pretrain_tf32.log
#   3. the bfloat16 check: scripts/run_all.sh's run vanilla.pretrain.bf16.seed0
#      (pretraining, finetuning and dev evaluation in bfloat16), compiled,
#      to compare with the float32 seeds' dev accuracy                          bf16.log, bf16/
#   4. benchmarks/speed.py, compiled, vanilla and rope in TF32 and bfloat16     speed_compiled.log
# and benchmarks/results/<GPU>.json with every figure, copied into RESULTS. PACK=FILE also
# keeps RESULTS packed in one .tgz, remade after each step, for machines that give back only a
# few files. A CPU dry run of the whole script, every step cut to a few steps:
#   DEVICE=cpu QUICK=1 bash scripts/gpu_check.sh
# On a machine whose system Python has torch, tqdm and tensorboard (as the lent GPU machines do),
# with the data files at the repository root:
#   PYTHON=python3 PACK=some/folder/gpu_check.tgz bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
RESULTS=${RESULTS:-report/gpu}
DEVICE=${DEVICE:-cuda}
mkdir -p "$RESULTS"
if [ -n "${QUICK:-}" ]; then
    # its figures mean nothing: keep them out of benchmarks/results/
    BENCH=(--batch_size 8 --train_steps 2 --rounds 1 --baseline_questions 2 --pretrain_epochs 1
           --json "$RESULTS/dry_run.json")
    EPOCHS=(--max_epochs 1)
else
    BENCH=(--baseline_questions 50)
    EPOCHS=()
fi
failed=0
step() {  # step LOG COMMAND...: run it into RESULTS/LOG, then copy the figures and pack RESULTS
    local log=$1; shift
    "$@" 2>&1 | tee "$RESULTS/$log" || { failed=1; echo "gpu_check.sh: $log: the step failed" >&2; }
    [ -n "${QUICK:-}" ] || cp benchmarks/results/*.json "$RESULTS/"
    if [ -n "${PACK:-}" ]; then tar czf "$PACK.tmp" -C "$RESULTS" . && mv "$PACK.tmp" "$PACK"; fi
}
speed() { "$PYTHON" benchmarks/speed.py --device "$DEVICE" "${BENCH[@]}" "$@"; }
bf16_run() {
    OUT=$RESULTS/bf16 RUNS=vanilla.pretrain.bf16.seed0 PYTHON=$PYTHON bash scripts/run_all.sh \
        --device "$DEVICE" --compile "${EPOCHS[@]}"
    local rc=$?
    rm -rf "$RESULTS"/bf16/*.params "$RESULTS/bf16/expt"  # 13 MB each; report/runs/ has the logs
    return "$rc"
}

step speed_eager.log speed --precisions tf32,bf16 --modes eager
TORCH_LOGS=perf_hints step pretrain_tf32.log speed --variants vanilla --precisions tf32 --modes compiled --pretrain \
    --baseline_questions 0
step bf16.log bf16_run
step speed_compiled.log speed --variants vanilla,rope --precisions tf32,bf16 --modes compiled --baseline_questions 0
exit "$failed"
