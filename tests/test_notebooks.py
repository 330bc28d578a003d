"""Both notebooks run from top to bottom, headless, in a tiny configuration."""
import os

import nbformat
from nbclient import NotebookClient

from conftest import ROOT
from test_cli import make_workdir


def execute(notebook, cwd, replacements):
    """Run a notebook in cwd after replacing (old, new) strings in its code; returns its outputs as text."""
    nb = nbformat.read(os.path.join(ROOT, notebook), as_version=4)
    for cell in nb.cells:
        for old, new in replacements:
            cell.source = cell.source.replace(old, new)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return "\n".join(output.get("text", "") for cell in nb.cells for output in cell.get("outputs", []))


def link_code(d):
    for name in ("src", "scripts", "london_baseline.py"):
        os.symlink(os.path.join(ROOT, name), d / name)


def test_assignment_notebook_runs_every_command(tmp_path):
    make_workdir(tmp_path)
    link_code(tmp_path)
    text = execute("assignment.ipynb", tmp_path, [
        ('"wiki.txt", "birth_places_train.tsv", "birth_dev.tsv", "birth_test_inputs.tsv"',
         '"wiki.txt", "train.tsv", "dev.tsv", "test.tsv"'),
        ('EPOCHS = ""', 'EPOCHS = "--max_epochs 1"'),
    ])
    for variant in ("vanilla", "perceiver", "synthesizer"):
        assert (tmp_path / f"{variant}.pretrain.dev.predictions").read_text(encoding="utf-8").count("\n") == 6
        assert (tmp_path / f"{variant}.pretrain.test.predictions").read_text(encoding="utf-8").count("\n") == 5
    assert (tmp_path / "vanilla.nopretrain.dev.predictions").exists()
    assert (tmp_path / "losses.png").stat().st_size > 10_000
    assert "PyTorch" in text


def test_char_demo_trains_and_samples(tmp_path):
    (tmp_path / "mingpt-demo").mkdir()
    link_code(tmp_path)
    with open(os.path.join(ROOT, "input.txt"), encoding="utf-8") as f:
        (tmp_path / "input.txt").write_text(f.read()[:20_000], encoding="utf-8")
    text = execute(os.path.join("mingpt-demo", "play_char.ipynb"), tmp_path / "mingpt-demo", [
        ("EXAMPLES = 20_000", "EXAMPLES = 300"), ("BLOCK_SIZE = 64", "BLOCK_SIZE = 16"),
        ("x, 500,", "x, 50,"),
    ])
    assert "trained 5 steps" in text
    assert "O God, O God!" in text
