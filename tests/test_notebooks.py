"""Both notebooks run from top to bottom, headless, in a tiny configuration."""
import os
import re

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import ROOT
from test_cli import make_workdir


def execute(notebook, cwd, replacements):
    """Run a notebook in cwd after replacing (old, new) strings in its code; returns each cell's outputs as text."""
    nb = nbformat.read(os.path.join(ROOT, notebook), as_version=4)
    for cell in nb.cells:
        for old, new in replacements:
            cell.source = cell.source.replace(old, new)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return ["".join(output.get("text", "") for output in cell.get("outputs", [])) for cell in nb.cells]


def link_code(d):
    for name in ("src", "scripts", "london_baseline.py"):
        os.symlink(os.path.join(ROOT, name), d / name)


def test_assignment_notebook_runs_every_command(tmp_path):
    make_workdir(tmp_path)
    link_code(tmp_path)
    text = "\n".join(execute("assignment.ipynb", tmp_path, [
        ('"wiki.txt", "birth_places_train.tsv", "birth_dev.tsv", "birth_test_inputs.tsv"',
         '"wiki.txt", "train.tsv", "dev.tsv", "test.tsv"'),
        ('EPOCHS = ""', 'EPOCHS = "--max_epochs 1"'),
    ]))
    for variant in ("vanilla", "perceiver", "synthesizer", "rope"):
        assert (tmp_path / f"{variant}.pretrain.dev.predictions").read_text(encoding="utf-8").count("\n") == 6
        assert (tmp_path / f"{variant}.pretrain.test.predictions").read_text(encoding="utf-8").count("\n") == 5
    assert (tmp_path / "vanilla.nopretrain.dev.predictions").exists()
    assert (tmp_path / "losses.png").stat().st_size > 10_000
    assert (tmp_path / "attention.png").stat().st_size > 10_000
    assert "PyTorch" in text
    assert f"working in {tmp_path}" in text  # the Colab-only clone skipped itself
    answers = re.findall(r"^Where was (?:Ada Lovelace|Alan Turing) born\? -> (.*)$", text, re.MULTILINE)
    assert len(answers) == 2


@pytest.mark.parametrize("cwd", ["mingpt-demo", "."])
def test_char_demo_trains_and_samples(tmp_path, cwd):
    (tmp_path / "mingpt-demo").mkdir()
    link_code(tmp_path)
    with open(os.path.join(ROOT, "input.txt"), encoding="utf-8") as f:
        text = f.read()[:20_000]
    (tmp_path / "input.txt").write_text(text, encoding="utf-8")
    outputs = execute(os.path.join("mingpt-demo", "play_char.ipynb"), tmp_path / cwd, [
        ("EXAMPLES = 20_000", "EXAMPLES = 2_000"), ("BLOCK_SIZE = 64", "BLOCK_SIZE = 16"),
        ("x, 500,", "x, 50,"),
    ])
    training = outputs[-2].replace("\r", "\n")
    assert "trained 32 steps" in training
    losses = [float(v) for v in re.findall(r"train loss (\d+\.\d+)", training)]
    assert losses[-1] < losses[0] - 0.5  # it learned
    # the sample is the prompt and then 50 sampled characters of the text's own
    sample = outputs[-1].removesuffix("\n")
    assert sample.startswith("O God, O God!") and len(sample) == len("O God, O God!") + 50
    written = sample[len("O God, O God!"):]
    assert set(written) <= set(text) and len(set(written)) > 5
