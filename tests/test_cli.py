"""
The commands of the handout (README.md, "The full pipeline"), end to end on a small corpus, for
every variant.
"""
import argparse
import contextlib
import csv
import io
import os
import signal
import subprocess
import sys

import matplotlib.image
import pytest
import torch

import dataset
import run as run_module  # src/run.py, in process; run() below runs it as a command
import utils
import trainer
from conftest import ROOT, data_path

sys.path.insert(0, os.path.join(ROOT, "scripts"))
import attention_map  # noqa: E402
import attention_on_name  # noqa: E402

RUN = os.path.join(ROOT, "src", "run.py")
VARIANT_FLAGS = {"vanilla": [], "synthesizer": [], "perceiver": ["--bottleneck_dim", "16"], "rope": []}


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


def test_predictions_csv_reads_each_gold_place_as_the_accuracy_line_does():
    # a third field after the place is not part of it for evaluate_places, so not for the CSV either
    lines = ["Where was Ann born?\tParis\tsee note\n", "Where was Bo born?\tRome\n", "Where was Cy born?\tOslo"]
    predictions = ["Paris", "Milan", "Oslo"]
    f = io.StringIO()
    run_module.write_predictions_csv(f, lines, predictions)
    rows = list(csv.reader(io.StringIO(f.getvalue())))
    assert rows[1:] == [["Where was Ann born?", "Paris", "Paris", "1"], ["Where was Bo born?", "Rome", "Milan", "0"],
                        ["Where was Cy born?", "Oslo", "Oslo", "1"]]
    assert sum(int(row[3]) for row in rows[1:]) == utils.count_correct_places(lines, predictions)[1]

    f = io.StringIO()
    run_module.write_predictions_csv(f, ["Where was Ann born?\n"], ["Paris"])
    assert f.getvalue().splitlines()[1] == "Where was Ann born?,,Paris,"


def test_a_seed_makes_training_deterministic(workdir):
    for name in ("a", "b"):
        run(workdir, "finetune", "vanilla", "wiki.txt", "--seed", "7", "--writing_params_path", f"seed_{name}.params",
            "--finetune_corpus_path", "train.tsv")
    a, b = (torch.load(workdir / f"seed_{n}.params", weights_only=True) for n in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_precision_and_micro_batch_options(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    seen = []  # only the set-up is under test
    monkeypatch.setattr(run_module, "pretrain", lambda args, *rest: seen.append(
        (args.precision, torch.backends.cuda.matmul.allow_tf32, args.micro_batch_size)))
    for flags in ["--tf32"], ["--precision", "bf16", "--micro_batch_size", "8"], []:  # ends with torch's default
        run_module.main(["pretrain", "vanilla", "wiki.txt", "--writing_params_path", "x.params", "--device", "cpu",
                         *flags])
    assert seen == [("tf32", True, run_module.CPU_MICRO_BATCH), ("bf16", False, 8),
                    ("fp32", False, run_module.CPU_MICRO_BATCH)]


def test_training_counts_denormals_as_zero_in_every_cpu_thread(workdir):
    """
    A fresh run.py process, where training would start: arithmetic on numbers below float32's
    smallest normal gives zero, also in the threads that split a large operation between them.
    """
    # the smallest denormal, made from its bits: no conversion can flush it before the product
    smallest = "torch.ones(1 << 20, dtype=torch.int32).view(torch.float32)"
    script = ("import torch, run\n"
              f"run.pretrain = lambda *args: print(int(({smallest} * 3).count_nonzero()))\n"
              "run.main(['pretrain', 'vanilla', 'wiki.txt', '--writing_params_path', 'x.params', '--device', 'cpu'])\n")
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "src")}
    result = subprocess.run([sys.executable, "-c", script], cwd=workdir, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "0"


def test_torchrun_resumes_in_two_processes_and_the_first_writes(workdir, monkeypatch):
    """A run stopped by Ctrl-C after its first step, in one process, goes on in two (gloo)."""
    monkeypatch.chdir(workdir)
    args = ["pretrain", "vanilla", "wiki.txt", "--writing_params_path", "ddp.params", "--max_epochs", "3",
            "--checkpoint_every", "0"]  # 41 documents at batch 128: one step per epoch
    step = trainer.Trainer.step

    def step_then_ctrl_c(self, *step_args):
        loss = step(self, *step_args)
        signal.raise_signal(signal.SIGINT)
        return loss

    monkeypatch.setattr(trainer.Trainer, "step", step_then_ctrl_c)
    with pytest.raises(trainer.TrainingStopped, match="interrupted after step 1 of 3"):
        run_module.main(args)
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             RUN, *args, "--resume", "--tb_expt_name", "torchrun_test"],
                            cwd=workdir, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("trained 2 steps") == 1
    assert not (workdir / "ddp.params.ckpt").exists()
    params = torch.load(workdir / "ddp.params", weights_only=True)
    run_module.build_model("vanilla", 32, params["tok_emb.weight"].size(0)).load_state_dict(params)
    logs = [d for d in os.listdir(workdir / "expt" / "pretrain") if d.startswith("torchrun_test")]
    assert len(logs) == 1 and len(os.listdir(workdir / "expt" / "pretrain" / logs[0])) == 1  # one TensorBoard file


def test_attention_map_draws_every_layer_and_head(workdir, monkeypatch, capsys):
    save_untrained_params(workdir, "perceiver", "perceiver.untrained.params")
    monkeypatch.chdir(workdir)
    attention_map.main(["perceiver", "wiki.txt", "--reading_params_path", "perceiver.untrained.params",
                        "--question", "Where was Ann born?", "--outputs_path", "map.png"])
    assert capsys.readouterr().out.endswith("wrote map.png\n")
    # 4 layers by 8 heads, each panel 2.2 x 2.4 inches at 150 dpi
    assert matplotlib.image.imread(workdir / "map.png").shape[:2] == (4 * 2.4 * 150, 8 * 2.2 * 150)


def test_attention_on_name_averages_right_and_wrong_answers_apart(workdir, monkeypatch, capsys):
    save_untrained_params(workdir, "rope", "rope.untrained.params")
    monkeypatch.chdir(workdir)
    args = argparse.Namespace(variant="rope", pretrain_corpus_path="wiki.txt",
                              reading_params_path="rope.untrained.params", bottleneck_dim=None)
    corpus, gpt = attention_map.load_model(args)
    questions = [line.split("\t")[0] for line in (workdir / "dev.tsv").read_text(encoding="utf-8").splitlines()[:2]]
    replays = [attention_map.answer_with_maps(gpt, corpus, q) for q in questions]
    # the untrained model answers nothing; here it answers Paris, then Rome, to two people born in Paris

    def answer_paris_then_rome(gpt, corpus, question):
        prompt, read, _, maps = replays[questions.index(question)]
        return prompt, read, "Paris" if question == questions[0] else "Rome", maps

    monkeypatch.setattr(attention_map, "answer_with_maps", answer_paris_then_rome)
    (workdir / "two.tsv").write_text("".join(f"{q}\tParis\n" for q in questions), encoding="utf-8")
    capsys.readouterr()
    attention_on_name.main(["rope", "wiki.txt", "--reading_params_path", "rope.untrained.params",
                            "--eval_corpus_path", "two.tsv"])
    lines = capsys.readouterr().out.splitlines()
    title = next(i for i, line in enumerate(lines) if line.startswith("rope, "))  # after the model's own lines
    assert lines[title].endswith("2 questions, 1 answered right")
    rows = [line.split() for line in lines[title + 3:]]
    assert [(name, int(head)) for name, head, *_ in rows] == [(f"blocks.{layer}.attn", head)
                                                              for layer in range(4) for head in range(8)]
    for question, (prompt, _, _, maps), column in zip(questions, replays, (2, 3)):
        name_length = len(question) - len("Where was  born?")
        expected = [attention_on_name.name_share(weights[0], len(prompt), name_length) for _, weights in maps]
        assert [float(row[column]) for row in rows] == pytest.approx(torch.cat(expected).tolist(), abs=1e-3)


def test_attention_on_name_refuses_a_line_that_is_not_a_question_with_its_place(tmp_path):
    (tmp_path / "bad.tsv").write_text("Where was Ann born?\tParis\nWho was Ann?\tParis\n", encoding="utf-8")
    with pytest.raises(dataset.UserError, match=r"bad.tsv, line 2: not 'Where was NAME born\?<TAB>place'"):
        attention_on_name.main(["rope", "wiki.txt", "--reading_params_path", "none.params",
                                "--eval_corpus_path", str(tmp_path / "bad.tsv")])


def test_evaluate_places_counts_exact_answers():
    # london_baseline.py's figure in README: answering "London" to every dev question gets 25 of 500
    assert utils.evaluate_places(data_path("birth_dev.tsv"), ["London"] * 500) == (500.0, 25.0)
    assert utils.evaluate_places(data_path("birth_dev.tsv"), ["london"] * 500) == (500.0, 0.0)
    golds = [line.split("\t")[1] for line in open(data_path("birth_dev.tsv"), encoding="utf-8").read().splitlines()]
    assert utils.evaluate_places(data_path("birth_dev.tsv"), golds) == (500.0, 500.0)
    assert utils.evaluate_places(data_path("birth_dev.tsv"), [g + " City" for g in golds]) == (500.0, 0.0)
    assert utils.evaluate_places(data_path("birth_test_inputs.tsv"), ["London"] * 437) == (0, 0)


def test_the_recipe_is_the_assignments():
    """The one place the tests state the handout's numbers; the other tests read run.RECIPE."""
    assert run_module.RECIPE == {
        "model": {"block_size": 128, "n_layer": 4, "n_head": 8, "n_embd": 256},
        "pretrain": {"max_epochs": 650, "batch_size": 128, "learning_rate": "pretrain_lr"},
        "finetune from scratch": {"max_epochs": 75, "batch_size": 256, "learning_rate": "finetune_lr"},
        "finetune from params": {"max_epochs": 10, "batch_size": 256, "learning_rate": "finetune_lr"},
    }


@pytest.fixture
def captured_training(workdir, monkeypatch):
    """Run run.main in workdir with Trainer.train replaced by a recorder of what it was given."""
    monkeypatch.chdir(workdir)
    runs = []

    def record(self, resume=False):
        runs.append((self.config, self.train_dataset))

    def record_config(*args, **kwargs):
        runs.append(make_config(*args, **kwargs))
        return runs[-1]

    make_config = run_module.model.GPTConfig
    monkeypatch.setattr(run_module.model, "GPTConfig", record_config)
    monkeypatch.setattr(run_module.trainer.Trainer, "train", record)
    return runs


@pytest.mark.parametrize("recipe, args", [
    ("pretrain", ["pretrain", "vanilla", "wiki.txt", "--writing_params_path", "r_pt.params"]),
    ("finetune from scratch", ["finetune", "vanilla", "wiki.txt", "--writing_params_path", "r_scratch.params",
                               "--finetune_corpus_path", "train.tsv"]),
    ("finetune from params", ["finetune", "vanilla", "wiki.txt", "--writing_params_path", "r_ft.params",
                              "--finetune_corpus_path", "train.tsv", "--reading_params_path", "r_pt.params"]),
])
def test_each_function_trains_with_its_recipe(captured_training, recipe, args):
    if recipe == "finetune from params":  # params to start from
        run_module.main(["pretrain", "vanilla", "wiki.txt", "--writing_params_path", "r_pt.params"])
        captured_training.clear()
    # learning rates unlike the defaults, to see that each function takes its own
    run_module.main(args + ["--pretrain_lr", "1e-3", "--finetune_lr", "2e-4"])
    model_config, (config, train_dataset) = captured_training
    assert {k: getattr(model_config, k) for k in run_module.RECIPE["model"]} == run_module.RECIPE["model"]
    expected = run_module.RECIPE[recipe]
    assert (config.max_epochs, config.batch_size) == (expected["max_epochs"], expected["batch_size"])
    assert config.learning_rate == {"pretrain_lr": 1e-3, "finetune_lr": 2e-4}[expected["learning_rate"]]
    assert config.lr_decay and config.warmup_tokens == 512 * 20
    assert config.final_tokens == 200 * 41 * 128  # the small wiki.txt has 41 documents
    assert not config.shuffle
    assert isinstance(train_dataset, dataset.CharCorruptionDataset if recipe == "pretrain" else dataset.NameDataset)


def test_evaluation_prompts_are_the_question_then_mask_and_answers_end_at_the_next_mask(captured_training,
                                                                                      monkeypatch, capsys):
    run_module.main(["pretrain", "vanilla", "wiki.txt", "--writing_params_path", "e.params"])  # untrained
    corpus = dataset.CharCorruptionDataset(open("wiki.txt", encoding="utf-8").read(), 128)
    prompts = []

    def decode(gpt, batch, steps, stop_id):
        prompts.extend(batch)
        return [corpus.encode("Rome" + dataset.MASK_CHAR + "x").tolist() for _ in batch]

    monkeypatch.setattr(utils, "greedy_decode", decode)
    run_module.main(["evaluate", "vanilla", "wiki.txt", "--reading_params_path", "e.params",
                     "--eval_corpus_path", "dev.tsv", "--outputs_path", "e.predictions"])
    lines = open("dev.tsv", encoding="utf-8").read().splitlines()
    assert ["".join(corpus.itos[int(i)] for i in p) for p in prompts] == [
        line.split("\t")[0] + dataset.MASK_CHAR for line in lines]
    assert open("e.predictions", encoding="utf-8").read() == "Rome\n" * len(lines)
    rome = sum(line.split("\t")[1] == "Rome" for line in lines)
    assert f"Correct: {float(rome)} out of {float(len(lines))}" in capsys.readouterr().out


def test_run_writes_params_atomically(captured_training, monkeypatch):
    with open("a.params", "wb") as f:
        f.write(b"old")

    def save_and_crash(obj, f):
        with open(f, "wb") if isinstance(f, (str, os.PathLike)) else contextlib.nullcontext(f) as file:
            file.write(b"half")
        raise KeyboardInterrupt  # killed while writing

    monkeypatch.setattr(torch, "save", save_and_crash)
    with pytest.raises(KeyboardInterrupt):
        run_module.main(["pretrain", "vanilla", "wiki.txt", "--writing_params_path", "a.params"])
    assert open("a.params", "rb").read() == b"old"
    assert not [name for name in os.listdir() if name.startswith("a.params.")]


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
    with pytest.raises(dataset.UserError, match=f"^--device {device}: no {name} device is available$"):
        run_module.main(["pretrain", "vanilla", "wiki.txt", "--writing_params_path", "x.params", "--device", device])


def test_help_shows_the_defaults():
    help_text = subprocess.run([sys.executable, RUN, "--help"], capture_output=True, text=True).stdout
    for default in ("(default: 0.006)", "(default: 0.0006)", "(default: 32)", "(default: run)", "(default: auto)",
                    "(default: 10)"):
        assert default in help_text
    assert "    python src/run.py pretrain|finetune|evaluate" in help_text  # the description as written
