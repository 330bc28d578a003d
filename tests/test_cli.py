"""The commands of SPEC.md section 9, end to end on a small corpus, for every variant."""
import csv
import os
import subprocess
import sys

import matplotlib.image
import pytest
import torch

import dataset
import run as run_module  # src/run.py, in process; run() below runs it as a command
from conftest import ROOT, data_path

sys.path.insert(0, os.path.join(ROOT, "scripts"))
import attention_map  # noqa: E402

RUN = os.path.join(ROOT, "src", "run.py")
VARIANT_FLAGS = {"vanilla": [], "synthesizer": [], "perceiver": ["--bottleneck_dim", "16"], "rope": []}


def run(cwd, *args, ok=True, epochs="1", env=None):
    result = subprocess.run([sys.executable, RUN, *args, "--max_epochs", epochs], cwd=cwd,
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


def save_untrained_params(workdir, variant, name):
    """The params of a new model of the assignment's size for workdir's corpus: no training needed."""
    corpus = dataset.CharCorruptionDataset((workdir / "wiki.txt").read_text(encoding="utf-8"), run_module.BLOCK_SIZE)
    torch.save(run_module.build_model(variant, 32, corpus.vocab_size).state_dict(), workdir / name)


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


def test_attention_map_draws_every_layer_and_head(workdir, monkeypatch, capsys):
    save_untrained_params(workdir, "perceiver", "perceiver.untrained.params")
    monkeypatch.chdir(workdir)
    attention_map.main(["perceiver", "wiki.txt", "--reading_params_path", "perceiver.untrained.params",
                        "--question", "Where was Ann born?", "--outputs_path", "map.png"])
    assert capsys.readouterr().out.endswith("wrote map.png\n")
    # 4 layers by 8 heads, each panel 2.2 x 2.4 inches at 150 dpi
    assert matplotlib.image.imread(workdir / "map.png").shape[:2] == (4 * 2.4 * 150, 8 * 2.2 * 150)
