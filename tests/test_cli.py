"""The commands of SPEC.md section 9, end to end on a small corpus, for every variant."""
import csv
import os
import subprocess
import sys

import pytest
import torch

import dataset
import run as run_module  # src/run.py, in process; run() below runs it as a command
import trainer
from conftest import ROOT, data_path

RUN = os.path.join(ROOT, "src", "run.py")
VARIANT_FLAGS = {"vanilla": [], "synthesizer": [], "perceiver": ["--bottleneck_dim", "16"]}


def run(cwd, *args, ok=True, epochs="1", env=None, stdin=None):
    result = subprocess.run([sys.executable, RUN, *args, "--max_epochs", epochs], cwd=cwd, input=stdin,
                            capture_output=True, text=True, timeout=600, env=env)
    if ok:
        assert result.returncode == 0, result.stderr
    return result


def make_workdir(d):
    """Fill d with a 41-document corpus and 24 training, 6 dev and 5 test questions."""

    def head(name, n):
        with open(data_path(name), encoding="utf-8") as f:
            return "".join(f.readlines()[:n])

    # the small corpus must still hold every character of the questions and places
    questions = head("birth_places_train.tsv", 24) + head("birth_dev.tsv", 6) + head("birth_test_inputs.tsv", 5)
    symbols = "".join(sorted(set(questions) - {"\n", "\t"}))
    (d / "wiki.txt").write_text(head("wiki.txt", 40) + symbols + "\n", encoding="utf-8")
    (d / "train.tsv").write_text(head("birth_places_train.tsv", 24), encoding="utf-8")
    (d / "dev.tsv").write_text(head("birth_dev.tsv", 6), encoding="utf-8")
    (d / "test.tsv").write_text(head("birth_test_inputs.tsv", 5), encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return make_workdir(tmp_path_factory.mktemp("cli"))


@pytest.mark.parametrize("variant", list(VARIANT_FLAGS))
def test_pretrain_finetune_evaluate(workdir, variant):
    flags = VARIANT_FLAGS[variant]
    run(workdir, "pretrain", variant, "wiki.txt", *flags, "--writing_params_path", f"{variant}.pretrain.params")
    run(workdir, "finetune", variant, "wiki.txt", *flags, "--reading_params_path", f"{variant}.pretrain.params",
        "--writing_params_path", f"{variant}.finetune.params", "--finetune_corpus_path", "train.tsv")
    run(workdir, "finetune", variant, "wiki.txt", *flags, "--writing_params_path", f"{variant}.model.params",
        "--finetune_corpus_path", "train.tsv")
    for params in (f"{variant}.finetune.params", f"{variant}.model.params"):
        state = torch.load(workdir / params, weights_only=True)
        assert "tok_emb.weight" in state and "blocks.0.attn.mask" in state

    dev = run(workdir, "evaluate", variant, "wiki.txt", *flags, "--reading_params_path", f"{variant}.finetune.params",
              "--eval_corpus_path", "dev.tsv", "--outputs_path", f"{variant}.pretrain.dev.predictions",
              "--predictions_csv", "dev.csv")
    assert "Correct: " in dev.stdout and " out of 6.0: " in dev.stdout
    with open(workdir / "dev.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    questions = [line.split("\t") for line in (workdir / "dev.tsv").read_text(encoding="utf-8").splitlines()]
    assert rows[0] == ["question", "gold", "prediction", "correct"]
    assert [r[:2] for r in rows[1:]] == questions
    correct = sum(int(r[3]) for r in rows[1:])
    assert f"Correct: {float(correct)} out of 6.0" in dev.stdout
    predictions = (workdir / f"{variant}.pretrain.dev.predictions").read_text(encoding="utf-8")
    assert len(predictions.split("\n")) == 6 + 1 and predictions.endswith("\n")

    test = run(workdir, "evaluate", variant, "wiki.txt", *flags, "--reading_params_path", f"{variant}.model.params",
               "--eval_corpus_path", "test.tsv", "--outputs_path", f"{variant}.test.predictions")
    assert f"Predictions written to {variant}.test.predictions; no targets provided" in test.stdout
    assert (workdir / f"{variant}.test.predictions").read_text(encoding="utf-8").count("\n") == 5

    logdir = workdir / "expt" / "pretrain" / f"run_{variant}_{16 if flags else 32}_pt_lr_0.006000_ft_lr_0.000600"
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(logdir))


def test_a_seed_makes_training_deterministic(workdir):
    for name in ("a", "b"):
        run(workdir, "finetune", "vanilla", "wiki.txt", "--seed", "7", "--writing_params_path", f"seed_{name}.params",
            "--finetune_corpus_path", "train.tsv")
    a, b = (torch.load(workdir / f"seed_{n}.params", weights_only=True) for n in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_tf32_only_with_the_flag(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    monkeypatch.setattr(run_module, "pretrain", lambda *args: None)  # only the set-up is under test
    for flags, tf32 in (["--tf32"], True), ([], False):  # ends with torch's default again
        run_module.main(["pretrain", "vanilla", "wiki.txt", "--writing_params_path", "x.params", *flags])
        assert torch.backends.cuda.matmul.allow_tf32 is tf32


def test_questions_from_standard_input_answered_on_standard_output(workdir):
    run(workdir, "finetune", "vanilla", "wiki.txt", "--writing_params_path", "ask.params",
        "--finetune_corpus_path", "train.tsv")
    evaluate = ("evaluate", "vanilla", "wiki.txt", "--reading_params_path", "ask.params")
    for corpus in ("test.tsv", "dev.tsv"):  # questions alone, then with their places
        from_file = run(workdir, *evaluate, "--eval_corpus_path", corpus, "--outputs_path", "ask.predictions")
        text = (workdir / corpus).read_text(encoding="utf-8")
        asked = run(workdir, *evaluate, "--eval_corpus_path", "-", "--outputs_path", "-", stdin=text)
        # standard output holds the predictions alone, the same as written to a file
        assert asked.stdout == (workdir / "ask.predictions").read_text(encoding="utf-8")
        assert "number of parameters" in asked.stderr and "data has" in asked.stderr
        result_line = from_file.stdout.strip().splitlines()[-1]
        assert asked.stderr.strip().splitlines()[-1] == result_line.replace("ask.predictions", "standard output")
    assert result_line.startswith("Correct: ") and result_line.endswith("%")
    empty = run(workdir, *evaluate, "--eval_corpus_path", "-", "--outputs_path", "-", stdin="", ok=False)
    assert empty.returncode == 2 and empty.stdout == ""
    assert empty.stderr.strip().splitlines()[-1] == "error: standard input: is empty"


@pytest.mark.parametrize("cuda, mps, device, workers", [
    (True, True, "cuda", 4), (False, True, "mps", 0), (False, False, "cpu", 0)])
def test_auto_device_is_cuda_then_mps_then_cpu(workdir, monkeypatch, cuda, mps, device, workers):
    monkeypatch.chdir(workdir)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    chosen = []
    monkeypatch.setattr(run_module, "pretrain", lambda args, *_: chosen.append(args))
    run_module.main(["pretrain", "vanilla", "wiki.txt", "--writing_params_path", "x.params"])
    assert trainer.resolve_device(chosen[0].device) == device
    assert chosen[0].num_workers == workers  # worker processes only on CUDA


@pytest.mark.parametrize("device, name", [("cuda", "CUDA"), ("mps", "MPS")])
def test_a_device_that_is_not_there_is_refused(workdir, monkeypatch, device, name):
    monkeypatch.chdir(workdir)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(dataset.DataError, match=f"^--device {device}: no {name} device is available$"):
        run_module.main(["pretrain", "vanilla", "wiki.txt", "--writing_params_path", "x.params", "--device", device])


def test_help_shows_the_defaults():
    help_text = subprocess.run([sys.executable, RUN, "--help"], capture_output=True, text=True).stdout
    for default in ("(default: 0.006)", "(default: 0.0006)", "(default: 32)", "(default: run)", "(default: auto)",
                    "(default: 10)"):
        assert default in help_text
    assert "    python src/run.py pretrain|finetune|evaluate" in help_text  # the description as written
