"""
scripts/run_all.sh, the one command of the results, with a stand-in for Python that records each
run.py command and writes the files that command would write (in an instant): which runs run, in
what order, with which flags and file names, and how a second call goes on after a failure.
"""
import json
import os
import signal
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The stand-in: each call appends its arguments to calls.jsonl; run.py commands write their params
# (or, for FAIL_WRITING, a checkpoint and exit 1; for CTRL_C_WRITING also a Ctrl-C), predictions and a TensorBoard directory; other
# scripts (the analysis) run with the real Python, unless ANALYSIS=skip.
STAND_IN = f"""#!{sys.executable}
import json, os, signal, sys
args = [a.replace({ROOT!r} + "/", "") for a in sys.argv[1:]]
if args[0] != "src/run.py":
    if os.environ.get("ANALYSIS") == "skip":
        sys.exit(0)
    os.execv({sys.executable!r}, [{sys.executable!r}] + sys.argv[1:])
with open("calls.jsonl", "a") as f:
    f.write(json.dumps(args) + "\\n")
options = dict(zip(args, args[1:]))
function, variant = args[1], args[2]
if function == "evaluate":
    with open(os.path.join({ROOT!r}, options["--eval_corpus_path"])) as f:
        questions = f.read().splitlines()
    with open(options["--outputs_path"], "w") as f:
        f.writelines("London\\n" for _ in questions)
    print("Correct: 1 out of 2: 50.0%")
else:
    params = options["--writing_params_path"]
    if params in (os.environ.get("FAIL_WRITING"), os.environ.get("CTRL_C_WRITING")):
        open(params + ".ckpt", "w").close()
        if params == os.environ.get("CTRL_C_WRITING"):  # as a terminal does: to the whole process group
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            os.killpg(0, signal.SIGINT)
        sys.exit(1)
    open(params, "w").close()
    if os.path.exists(params + ".ckpt"):
        os.remove(params + ".ckpt")
    tensorboard = "expt/%s/%s_%s_x" % (function, options["--tb_expt_name"], variant)
    os.makedirs(tensorboard, exist_ok=True)
    open(tensorboard + "/events", "w").close()
"""


def run_all(tmp_path, *extra, **env):
    stand_in = tmp_path / "python"
    stand_in.write_text(STAND_IN)
    stand_in.chmod(0o755)
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    # PYTHON and OUT relative to the caller's directory, as a user would give them
    # (in a process group of its own, which the stand-in's Ctrl-C reaches, and with Ctrl-C's default
    # action restored: started in the background, as under nohup, the tests would pass SIGINT on
    # ignored, and bash cannot trap a signal that was ignored when it started)
    result = subprocess.run(["bash", os.path.join(ROOT, "scripts", "run_all.sh"), *extra], capture_output=True,
                            text=True, cwd=tmp_path, env={**os.environ, "PYTHON": "./python", "OUT": "out", **env},
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    calls_file = out / "calls.jsonl"
    calls = [json.loads(line) for line in calls_file.read_text().splitlines()] if calls_file.exists() else []
    calls_file.unlink(missing_ok=True)
    return result, calls, out


def option(call, name):
    return call[call.index(name) + 1] if name in call else None


def test_every_run_in_order_with_its_seed_and_files(tmp_path):
    result, calls, out = run_all(tmp_path, "--device", "cpu", BF16="1", ANALYSIS="skip")
    assert result.returncode == 0, result.stderr
    expected_runs = [f"{run}.seed{seed}" for seed in (0, 1, 2) for run in (
        "vanilla.nopretrain", "vanilla.pretrain", "perceiver.pretrain", "synthesizer.pretrain", "rope.pretrain")]
    expected_runs += [f"{variant}.pretrain.bf16.seed0" for variant in ("vanilla", "perceiver", "synthesizer", "rope")]
    dev_outputs = [option(c, "--outputs_path") for c in calls if option(c, "--eval_corpus_path") == "birth_dev.tsv"]
    assert dev_outputs == [f"report/{run}.dev.predictions" for run in expected_runs]
    for call in calls:
        assert "wiki.txt" in call and option(call, "--device") == "cpu"
        assert (option(call, "--bottleneck_dim") == "64") == (call[2] == "perceiver")
    # a run's commands carry its seed, and only the bf16 runs' carry a precision
    by_writer = {option(c, "--writing_params_path"): c for c in calls if c[1] != "evaluate"}
    assert option(by_writer["rope.pretrain.seed2.pretrain.params"], "--seed") == "2"
    assert option(by_writer["vanilla.nopretrain.seed1.finetune.params"], "--seed") == "1"
    assert option(by_writer["perceiver.pretrain.bf16.seed0.finetune.params"], "--precision") == "bf16"
    assert all(option(c, "--precision") is None for c in calls if "bf16" not in json.dumps(c))
    # seed 0 in the default precision: the assignment's names, pretrained params finetuned
    assert {"vanilla.model.params", "vanilla.pretrain.params", "vanilla.finetune.params",
            "rope.pretrain.params", "rope.finetune.params"} <= set(by_writer)
    assert option(by_writer["synthesizer.finetune.params"], "--reading_params_path") == "synthesizer.pretrain.params"
    assert option(by_writer["vanilla.model.params"], "--reading_params_path") is None
    for run in ("vanilla.nopretrain", "vanilla.pretrain", "perceiver.pretrain", "synthesizer.pretrain",
                "rope.pretrain"):
        assert (out / f"{run}.dev.predictions").read_text() == (out / f"report/{run}.seed0.dev.predictions").read_text()
        assert (out / f"{run}.test.predictions").exists()
    assert not list(out.glob("*bf16*.predictions")) and not list(out.glob("*seed1*.predictions"))
    assert (out / "report/runs/pretrain/seed1_rope_x/events").exists()
    assert (out / "report/runs/finetune/nopretrain_seed2_vanilla_x/events").exists()
    # a second call has nothing left to do
    result, calls, _ = run_all(tmp_path, "--device", "cpu", BF16="1", ANALYSIS="skip")
    assert result.returncode == 0 and calls == []


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_second_call_resumes_what_failed_and_skips_what_finished(tmp_path, jobs):
    runs = {"RUNS": "rope.pretrain.seed1 vanilla.nopretrain.seed0", "JOBS": jobs}
    result, calls, out = run_all(tmp_path, FAIL_WRITING="rope.pretrain.seed1.pretrain.params", **runs)
    assert result.returncode != 0
    # the other run still ran (side by side with JOBS=2, so in any order)
    assert sorted(c[1] for c in calls) == ["evaluate", "evaluate", "finetune", "pretrain"]
    assert not any("--resume" in c for c in calls)
    result, calls, out = run_all(tmp_path, **runs)
    assert result.returncode == 0, result.stderr
    assert [(c[1], "--resume" in c) for c in calls] == [("pretrain", True), ("finetune", False), ("evaluate", False)]
    assert "resumed" in (out / "logs/times.txt").read_text()
    # the analysis of every predictions file so far
    assert "rope.pretrain" in (out / "report/analysis.md").read_text()


def test_ctrl_c_stops_the_runs_after_the_checkpoint(tmp_path):
    runs = "rope.pretrain.seed1 vanilla.nopretrain.seed0"
    result, calls, out = run_all(tmp_path, RUNS=runs, CTRL_C_WRITING="rope.pretrain.seed1.pretrain.params")
    assert result.returncode != 0
    assert calls == [calls[0]] and calls[0][1] == "pretrain"  # the next run never starts
    assert (out / "rope.pretrain.seed1.pretrain.params.ckpt").exists()


@pytest.mark.parametrize("runs", ["rope.pretrain", "unknown.pretrain.seed0", "vanilla.nopretrain.bf16.seed0"])
def test_an_unknown_run_is_refused(tmp_path, runs):
    result, calls, _ = run_all(tmp_path, RUNS=runs)
    assert result.returncode == 2 and calls == []
    assert runs in result.stderr
