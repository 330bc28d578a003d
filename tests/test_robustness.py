"""Bad input, interrupted runs and mismatched checkpoints, through the command line as a user meets them."""
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

import dataset
import run as run_module
import trainer
import utils
from test_cli import RUN, make_workdir, run, save_untrained_params


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = make_workdir(tmp_path_factory.mktemp("robust"))
    run(d, "finetune", "synthesizer", "wiki.txt", "--writing_params_path", "synth.params",
        "--finetune_corpus_path", "train.tsv")
    run(d, "finetune", "perceiver", "wiki.txt", "--bottleneck_dim", "16", "--writing_params_path", "p16.params",
        "--finetune_corpus_path", "train.tsv")
    return d


def fails(workdir, *args, message, code=2, epochs="1"):
    before = set(os.listdir(workdir))
    result = run(workdir, *args, ok=False, epochs=epochs)
    assert result.returncode == code, result.stderr
    assert result.stderr.strip().splitlines()[-1] == message
    assert "Traceback" not in result.stderr
    assert set(os.listdir(workdir)) - before <= {"expt"}  # nothing half-written
    return result


def evaluate_args(params, *extra, variant="vanilla"):
    return ("evaluate", variant, "wiki.txt", "--reading_params_path", params, "--eval_corpus_path", "dev.tsv",
            "--outputs_path", "out.predictions", *extra)


def test_missing_corpus(workdir):
    fails(workdir, "pretrain", "vanilla", "nowhere.txt", "--writing_params_path", "x.params",
          message="error: nowhere.txt: cannot read the pretraining corpus: No such file or directory")


def test_missing_eval_corpus(workdir):
    fails(workdir, "evaluate", "synthesizer", "wiki.txt", "--reading_params_path", "synth.params",
          "--eval_corpus_path", "nowhere.tsv", "--outputs_path", "out.predictions",
          message="error: nowhere.tsv: cannot read the evaluation corpus: No such file or directory")


def test_missing_params(workdir):
    fails(workdir, *evaluate_args("nowhere.params"), message="error: nowhere.params: no such params file")


def test_output_directory_that_does_not_exist(workdir):
    fails(workdir, "pretrain", "vanilla", "wiki.txt", "--writing_params_path", "no/such/dir/x.params",
          message="error: --writing_params_path no/such/dir/x.params: the directory no/such/dir does not exist")


def test_missing_required_option(workdir):
    fails(workdir, "finetune", "vanilla", "wiki.txt", "--writing_params_path", "x.params",
          message="error: finetune needs --finetune_corpus_path")


@pytest.mark.parametrize("name, text, message", [
    ("notab.tsv", "Where was A born?\tRome\nWhere was B born? Paris\n",
     "line 2: expected 'question<TAB>place', found 0 tabs"),
    ("noplace.tsv", "Where was A born?\t\n", "line 1: the place is empty"),
    ("empty.tsv", "", "is empty"),
])
def test_bad_finetuning_corpus(workdir, name, text, message):
    (workdir / name).write_text(text, encoding="utf-8")
    fails(workdir, "finetune", "vanilla", "wiki.txt", "--writing_params_path", "x.params",
          "--finetune_corpus_path", name, message=f"error: {name}: {message}")


@pytest.mark.parametrize("text, message", [
    ("A first document.\nA \u2047 in the second.\n", "line 2: contains the reserved character '⁇' (U+2047)"),
    ("A first document.\nabc\n", "line 2: a document needs at least 4 characters, this one has 3"),
    ("", "is empty"),
])
def test_bad_pretraining_corpus(workdir, text, message):
    (workdir / "bad_wiki.txt").write_text(text, encoding="utf-8")
    fails(workdir, "pretrain", "vanilla", "bad_wiki.txt", "--writing_params_path", "x.params",
          message=f"error: bad_wiki.txt: {message}")


def test_params_of_another_variant(workdir):
    fails(workdir, *evaluate_args("synth.params", variant="perceiver"),
          message="error: synth.params: these params are for the synthesizer model, "
                  "not for perceiver with --bottleneck_dim 32")


@pytest.mark.parametrize("written_by, read_as", [("vanilla", "rope"), ("rope", "vanilla")])
def test_rope_and_vanilla_params_are_told_apart(workdir, written_by, read_as):
    save_untrained_params(workdir, written_by, f"{written_by}.untrained.params")
    fails(workdir, *evaluate_args(f"{written_by}.untrained.params", variant=read_as),
          message=f"error: {written_by}.untrained.params: these params are for the {written_by} model, "
                  f"not for {read_as}")


def test_params_of_another_pretraining_corpus(workdir):
    corpus = "Where was Ann born? In Paris.\n"
    (workdir / "other_wiki.txt").write_text(corpus, encoding="utf-8")
    trained_with = torch.load(workdir / "synth.params", weights_only=True)["tok_emb.weight"].size(0)
    fails(workdir, "evaluate", "synthesizer", "other_wiki.txt", "--reading_params_path", "synth.params",
          "--eval_corpus_path", "dev.tsv", "--outputs_path", "out.predictions",
          message=f"error: synth.params: these params have a vocabulary of "
                  f"{trained_with} symbols, other_wiki.txt gives {2 + len(set(corpus))}: "  # PAD, MASK, the characters
                  f"name the pretraining corpus they were trained with")


def test_params_of_another_bottleneck_dim(workdir):
    fails(workdir, *evaluate_args("p16.params", "--bottleneck_dim", "8", variant="perceiver"),
          message="error: p16.params: these params are for the perceiver with --bottleneck_dim 16 model, "
                  "not for perceiver with --bottleneck_dim 8")


def test_not_a_params_file(workdir):
    (workdir / "junk.params").write_bytes(b"this is not a checkpoint")
    fails(workdir, *evaluate_args("junk.params"), message="error: junk.params: not a params file")


@pytest.mark.parametrize("m", ["0", "128"])
def test_bottleneck_dim_out_of_range(workdir, m):
    fails(workdir, "pretrain", "perceiver", "wiki.txt", "--bottleneck_dim", m, "--writing_params_path", "x.params",
          message=f"error: --bottleneck_dim {m}: must be between 1 and 127")


def test_unused_flags_are_warned_about(workdir):
    result = run(workdir, *evaluate_args("synth.params", "--finetune_corpus_path", "train.tsv", "--bottleneck_dim", "8",
                                         variant="synthesizer"))
    assert "warning: evaluate synthesizer ignores --finetune_corpus_path, --bottleneck_dim" in result.stderr


def test_questions_with_unknown_characters_still_get_one_prediction_each(workdir):
    (workdir / "odd.tsv").write_text("Where was \u4e2d\u6587 born?\tBeijing\nWhere was Ann born?\tParis\n"
                                     "\u00e6\u00f8\u00e5\u4e2d\tOslo\n", encoding="utf-8")
    result = run(workdir, "evaluate", "synthesizer", "wiki.txt", "--reading_params_path", "synth.params",
                 "--eval_corpus_path", "odd.tsv", "--outputs_path", "odd.predictions")
    assert "warning: 2 questions had characters outside the vocabulary, left out" in result.stderr
    assert (workdir / "odd.predictions").read_text(encoding="utf-8").count("\n") == 3


@pytest.mark.parametrize("variant, params, longest", [("vanilla", "vanilla.untrained.params", 96),
                                                     ("synthesizer", "synth.params", 95)])
def test_a_question_too_long_for_the_context(workdir, variant, params, longest):
    # the synthesizer reads one position less: its w2 and b2 have block_size - 1 columns
    save_untrained_params(workdir, "vanilla", "vanilla.untrained.params")
    args = ("evaluate", variant, "wiki.txt", "--reading_params_path", params, "--outputs_path", "out.predictions")
    (workdir / "longest.tsv").write_text("x" * longest + "\tRome\n", encoding="utf-8")
    assert "Correct: " in run(workdir, *args, "--eval_corpus_path", "longest.tsv").stdout
    (workdir / "long.tsv").write_text("Where was A born?\tRome\n" + "x" * (longest + 1) + "\tRome\n", encoding="utf-8")
    fails(workdir, *args, "--eval_corpus_path", "long.tsv",
          message=f"error: long.tsv: line 2: the question has {longest + 1} characters; at most {longest} leave "
                  f"room for the answer")


def test_a_diverging_loss_stops_the_run_without_writing_params(workdir):
    fails(workdir, "finetune", "vanilla", "wiki.txt", "--writing_params_path", "nan.params",
          "--finetune_corpus_path", "train.tsv", "--finetune_lr", "1e30", "--checkpoint_every", "0",
          code=1, epochs="3",
          message="stopped: the loss became nan at step 1 (epoch 2); nothing was saved; a lower learning rate may help")


def finetune_args(params):
    return ["finetune", "vanilla", "wiki.txt", "--writing_params_path", params, "--finetune_corpus_path", "train.tsv",
            "--checkpoint_every", "1", "--seed", "3"]


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT])
def test_a_run_killed_midway_resumes_to_the_same_params(workdir, stop):
    epochs = "8"  # 24 questions at batch 256: one step per epoch
    # MKL's reproducible mode: its results must not depend on where each run's memory lands
    env = {**os.environ, "MKL_CBWR": "AUTO,STRICT"}
    run(workdir, *finetune_args("whole.params"), epochs=epochs, env=env)
    name = f"resumed_{stop.name}.params"
    process = subprocess.Popen([sys.executable, RUN, *finetune_args(name), "--max_epochs", epochs], cwd=workdir,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    checkpoint = workdir / f"{name}.ckpt"
    deadline = time.time() + 300
    while not checkpoint.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(1.5)  # let it run on into a later step
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=300)
    assert not (workdir / name).exists() and checkpoint.exists()
    if stop == signal.SIGINT:
        assert process.returncode == 1
        assert "stopped: interrupted after step" in stderr and "go on with --resume" in stderr
    run(workdir, *finetune_args(name), "--resume", epochs=epochs, env=env)
    whole = torch.load(workdir / "whole.params", weights_only=True)
    resumed = torch.load(workdir / name, weights_only=True)
    # Bit for bit equal in 30 of 30 trials by hand, but within the suite a last-bit difference
    # sometimes appears, and Adam turns it into up to a whole step for a weight whose gradient is
    # near zero. So count the weights that moved: a resume that skips the random generators or
    # the optimizer state moves 99% of them by more than 1e-6 (measured), a rounding difference few.
    moved = {k: int(((whole[k] - resumed[k]).abs() > 1e-6).sum()) for k in whole}
    assert sum(moved.values()) < 1e-3 * sum(t.numel() for t in whole.values()), moved
    assert not checkpoint.exists()  # a finished run leaves its params, not its checkpoint


def test_a_diverging_loss_keeps_the_last_good_checkpoint_and_resume_checks_the_run(workdir):
    args = ["finetune", "vanilla", "wiki.txt", "--writing_params_path", "other.params",
            "--finetune_corpus_path", "train.tsv", "--checkpoint_every", "1"]
    result = run(workdir, *args, "--finetune_lr", "1e30", ok=False, epochs="3")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "stopped: the loss became nan at step 1 (epoch 2); the last checkpoint, other.params.ckpt, "
        "is from before it; a lower learning rate may help")
    state = torch.load(workdir / "other.params.ckpt", weights_only=True)
    assert state["step"] == 1 and all(torch.isfinite(v).all() for v in state["model"].values())
    # resuming it with another learning rate would be another run
    result = run(workdir, *args, "--resume", ok=False, epochs="3")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(
        "error: other.params.ckpt: this checkpoint is of another run (finetune vanilla, epochs=3 lr=1e+30")
    assert not (workdir / "other.params").exists()


def test_resume_without_a_checkpoint(workdir):
    fails(workdir, "finetune", "vanilla", "wiki.txt", "--writing_params_path", "none.params",
          "--finetune_corpus_path", "train.tsv", "--resume",
          message="error: none.params.ckpt: no checkpoint to resume from")


def test_params_are_written_atomically(tmp_path):
    path = tmp_path / "a.params"
    path.write_bytes(b"old")

    def crash(f):
        f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        utils.write_atomically(path, crash, mode="wb")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["a.params"]


def pretrain_args(params):
    return ["pretrain", "vanilla", "wiki.txt", "--writing_params_path", params, "--seed", "4",
            "--checkpoint_every", "0", "--max_epochs", "3"]


def test_an_interrupted_pretraining_resumes_to_the_same_params(workdir, monkeypatch):
    """Span corruption draws from Python's `random`: a resume must restore it, and every other generator."""
    monkeypatch.chdir(workdir)
    run_module.main(pretrain_args("pt_whole.params"))  # 41 documents at batch 128: one step per epoch
    step = trainer.Trainer.step

    def step_then_ctrl_c(self, *args):
        loss = step(self, *args)
        signal.raise_signal(signal.SIGINT)  # as if Ctrl-C were pressed during the first step
        return loss

    monkeypatch.setattr(trainer.Trainer, "step", step_then_ctrl_c)
    with pytest.raises(trainer.TrainingStopped, match="interrupted after step 1 of 3"):
        run_module.main(pretrain_args("pt_resumed.params"))
    monkeypatch.setattr(trainer.Trainer, "step", step)
    random.seed(99)  # whatever the generators hold now must not matter
    run_module.main(pretrain_args("pt_resumed.params") + ["--resume"])
    whole = torch.load(workdir / "pt_whole.params", weights_only=True)
    resumed = torch.load(workdir / "pt_resumed.params", weights_only=True)
    # Equal bit for bit when measured; a last-bit difference could still let Adam move a weight
    # whose gradient is near zero, so allow a few in a million. Without restoring Python's
    # generator, 3,196,045 of the 3,296,768 weights moved by more than 1e-6.
    moved = sum(int(((whole[k] - resumed[k]).abs() > 1e-6).sum()) for k in whole)
    assert moved <= 1e-5 * sum(t.numel() for t in whole.values())


def test_evaluating_into_the_evaluation_corpus_is_refused(workdir):
    dev = (workdir / "dev.tsv").read_bytes()
    fails(workdir, "evaluate", "synthesizer", "wiki.txt", "--reading_params_path", "synth.params",
          "--eval_corpus_path", "dev.tsv", "--outputs_path", "dev.tsv",
          message="error: --outputs_path dev.tsv: is also --eval_corpus_path; writing it would lose that file")
    assert (workdir / "dev.tsv").read_bytes() == dev


@pytest.mark.parametrize("args, message", [
    (("evaluate", "synthesizer", "wiki.txt", "--reading_params_path", "synth.params", "--eval_corpus_path", "dev.tsv",
      "--outputs_path", "./synth.params"), "--outputs_path ./synth.params: is also --reading_params_path"),
    (("evaluate", "synthesizer", "wiki.txt", "--reading_params_path", "synth.params", "--eval_corpus_path", "dev.tsv",
      "--outputs_path", "o.predictions", "--predictions_csv", "o.predictions"),
     "--outputs_path o.predictions: is also --predictions_csv"),
    (("pretrain", "vanilla", "wiki.txt", "--writing_params_path", "nowhere/../wiki.txt"),
     "--writing_params_path nowhere/../wiki.txt: is also the pretraining corpus"),
    (("finetune", "synthesizer", "wiki.txt", "--reading_params_path", "synth.params",
      "--writing_params_path", "synth.params", "--finetune_corpus_path", "train.tsv"),
     "--writing_params_path synth.params: is also --reading_params_path"),
    (("finetune", "vanilla", "wiki.txt", "--writing_params_path", "train.tsv", "--finetune_corpus_path", "link.tsv"),
     "--writing_params_path train.tsv: is also --finetune_corpus_path"),  # a symbolic link
    (("finetune", "vanilla", "wiki.txt", "--writing_params_path", "hard.tsv", "--finetune_corpus_path", "train.tsv"),
     "--writing_params_path hard.tsv: is also --finetune_corpus_path"),  # a hard link
])
def test_an_output_that_would_overwrite_an_input_or_another_output_is_refused(workdir, monkeypatch, args, message):
    monkeypatch.chdir(workdir)
    if not os.path.exists("link.tsv"):
        os.symlink("train.tsv", "link.tsv")
        os.link("train.tsv", "hard.tsv")
    with pytest.raises(dataset.UserError) as error:
        run_module.main([*args, "--max_epochs", "1"])  # refused before anything is read or written
    assert str(error.value) == f"{message}; writing it would lose that file"


UNREADABLE = "cannot be read as a checkpoint (truncated, or not written by this trainer)"


class WritesAFile:
    """Unpickling this runs code: it creates the file `pwned`."""

    def __reduce__(self):
        return open, ("pwned", "w")


def test_a_checkpoint_of_garbage_is_refused(workdir):
    (workdir / "c.params.ckpt").write_bytes(b"\x00not a checkpoint at all")
    try:
        fails(workdir, "finetune", "vanilla", "wiki.txt", "--writing_params_path", "c.params",
              "--finetune_corpus_path", "train.tsv", "--resume",
              message=f"error: c.params.ckpt: {UNREADABLE}")
    finally:
        (workdir / "c.params.ckpt").unlink()


@pytest.mark.parametrize("content, message", [
    ("truncated", UNREADABLE),
    ("code", UNREADABLE),
    ("params", "not a checkpoint (it holds no training state; a params file?)"),
])
def test_a_checkpoint_that_is_not_one_is_refused_without_running_its_code(workdir, monkeypatch, content, message):
    monkeypatch.chdir(workdir)
    params = (workdir / "synth.params").read_bytes()
    if content == "truncated":
        (workdir / "c.params.ckpt").write_bytes(params[:len(params) // 2])
    elif content == "params":
        (workdir / "c.params.ckpt").write_bytes(params)
    else:
        torch.save({"model": WritesAFile()}, "c.params.ckpt")
    try:
        with pytest.raises(trainer.CheckpointError) as error:
            run_module.main(["finetune", "synthesizer", "wiki.txt", "--writing_params_path", "c.params",
                             "--finetune_corpus_path", "train.tsv", "--resume"])
        assert str(error.value) == f"c.params.ckpt: {message}"
        assert not (workdir / "pwned").exists()
    finally:
        (workdir / "c.params.ckpt").unlink()
