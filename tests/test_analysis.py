"""scripts/analyze_predictions.py on tiny files made here: the accuracies, the two paired tests,
agreement, the biography measure, and its one-line errors for bad input."""
import os
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "scripts"))
import analyze_predictions as analysis  # noqa: E402
import attention_on_name  # noqa: E402

PEOPLE = [("Ada Lovelace", "London"), ("Bo Li", "Beijing"), ("Cy Twombly", "Lexington"),
          ("Di Ma", "Paris")]
WIKI = [
    "Ada Lovelace. Ada Lovelace was born in London and worked on the Analytical Engine .",
    # starts with Ada Lovelace's name but is someone else's: its Paris is not hers
    "Ada Lovelace Smith. Ada Lovelace Smith was born in Paris .",
    "Bo Li. Bo Li is a painter .",
    "Di Ma. Di Ma was born in Paris .",
]  # no line for Cy Twombly


def write_files(tmp_path, predictions):
    """birth_dev.tsv and wiki.txt for PEOPLE, and report/<name> for each {name: answers}."""
    dev = tmp_path / "birth_dev.tsv"
    dev.write_text("".join(f"Where was {name} born?\t{place}\n" for name, place in PEOPLE),
                   encoding="utf-8")
    wiki = tmp_path / "wiki.txt"
    wiki.write_text("\n".join(WIKI) + "\n", encoding="utf-8")
    report = tmp_path / "report"
    report.mkdir()
    for name, answers in predictions.items():
        (report / name).write_text("".join(a + "\n" for a in answers), encoding="utf-8")
    return str(dev), str(wiki), str(report)


def row(markdown, section, first_cells):
    """The table row under "## section" that starts with these cells."""
    text = markdown.split(f"## {section}\n")[1].split("\n## ")[0]
    start = "| " + " | ".join(first_cells) + " |"
    rows = [line for line in text.splitlines() if line.startswith(start)]
    assert len(rows) == 1, (start, text)
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


def test_accuracy_is_exact_match_with_mean_and_sample_sd(tmp_path):
    # seed 0: 3 of 4 right; seed 1: 1 of 4 (a different case or a trailing space is wrong)
    text = analysis.analysis(*write_files(tmp_path, {
        "vanilla.pretrain.seed0.dev.predictions": ["London", "Beijing", "Lexington", "Rome"],
        "vanilla.pretrain.seed1.dev.predictions": ["London", "beijing", "Lexington ", "Rome"],
    }))
    # mean 50, sample sd sqrt(((75-50)^2 + (25-50)^2) / (2-1)) = 35.36 (the population sd would be 25)
    assert row(text, "Accuracy", ["vanilla.pretrain"]) == [
        "vanilla.pretrain", "2", "3/4 (75.0%)", "1/4 (25.0%)", "-", "50.0% ± 35.4"]
    assert row(text, "Accuracy", ["rope.pretrain"])[-1] == "no predictions yet"
    mean, sd = analysis.mean_sd([1, 2, 3, 4])
    assert mean == 2.5 and sd == pytest.approx((5 / 3) ** 0.5)
    assert analysis.mean_sd([30])[1] is None


def test_mcnemar_exact_p_value_counts_only_discordant_questions():
    # 3 both right, 2 both wrong, 1 only A right, 4 only B right:
    # p = 2 * P(X <= 1), X ~ Binomial(5, 1/2) = 2 * (1 + 5) / 32 = 0.375
    a = np.array([1, 1, 1, 0, 0, 1, 0, 0, 0, 0], dtype=bool)
    b = np.array([1, 1, 1, 0, 0, 0, 1, 1, 1, 1], dtype=bool)
    assert analysis.mcnemar_exact(a, b) == (1, 4, pytest.approx(0.375))
    assert analysis.mcnemar_exact(b, a) == (4, 1, pytest.approx(0.375))
    # 5 to 0: 2 / 32
    five_to_none = analysis.mcnemar_exact(np.ones(5, dtype=bool), np.zeros(5, dtype=bool))
    assert five_to_none == (5, 0, pytest.approx(0.0625))
    # no discordant question: no evidence either way
    assert analysis.mcnemar_exact(a, a) == (0, 0, 1.0)


def test_paired_bootstrap_difference_interval_and_p_value():
    # A right with probability 0.5, and B right where A is, except on a fifth of those: a true
    # difference of +10 points, and answers as correlated as two runs' are
    rng = np.random.default_rng(1)
    a = rng.random(2000) < 0.5
    b = a & (rng.random(2000) >= 0.2)
    difference, low, high, p = analysis.paired_bootstrap(a, b)
    assert difference == pytest.approx(100 * (a.mean() - b.mean()))
    assert low < 10 < high and low > 0 and p < 0.001
    # the interval is the normal one of a paired mean, +-1.96 standard errors, to within 10%
    # (resampling A's and B's answers apart would make it twice as wide)
    se = 100 * np.std(a.astype(float) - b, ddof=1) / np.sqrt(len(a))
    assert high - low == pytest.approx(2 * 1.96 * se, rel=0.1)
    swapped = analysis.paired_bootstrap(b, a)
    assert swapped[0] == pytest.approx(-difference) and swapped[2] < 0
    # the same answers: no difference, p = 1
    assert analysis.paired_bootstrap(a, a) == (0, 0, 0, 1)


def test_agreement_counts_same_answers_and_both_right():
    right = np.array([True, False, False, True])
    other = np.array([True, False, False, False])
    same_answer, both_right, right_where_same = analysis.agreement_row(
        ["London", "Rome", "Oslo", "Paris"], ["London", "Rome", "Bern", "Nice"], right, other, 4)
    assert (same_answer, both_right, right_where_same) == ("2 (50.0%)", "1 (25.0%)", "50%")


def test_biography_is_the_line_that_starts_with_the_name(tmp_path):
    lines_of = analysis.biographies([name for name, _ in PEOPLE], WIKI)
    assert lines_of == {"Ada Lovelace": [WIKI[0]], "Bo Li": [WIKI[2]], "Cy Twombly": [],
                        "Di Ma": [WIKI[3]]}
    assert analysis.place_in_biography("London", lines_of["Ada Lovelace"])
    # Paris is in Ada Lovelace Smith's line only
    assert not analysis.place_in_biography("Paris", lines_of["Ada Lovelace"])
    assert not analysis.place_in_biography("Beijing", lines_of["Bo Li"])
    assert not analysis.place_in_biography("Lexington", lines_of["Cy Twombly"])
    # in the biography: London and Paris (Ada Lovelace, Di Ma); not: Beijing and Lexington
    text = analysis.analysis(*write_files(tmp_path, {
        "vanilla.pretrain.seed0.dev.predictions": ["London", "Beijing", "Boston", "Paris"],
        "vanilla.nopretrain.seed0.dev.predictions": ["Rome", "Beijing", "Boston", "Rome"],
    }))
    assert "Found for 3 of the 4 dev people (0 with several lines, namesakes, which all count), " \
           "for 1 not (Cy Twombly)." in text
    assert "occurs in the biography for 2 questions and not for 2" in text
    biography = "Is the answer in the biography?"
    assert row(text, biography, ["run"])[1:] == ["place in biography (2 questions)", "not in it (2 questions)"]
    assert row(text, biography, ["vanilla.pretrain"])[1:] == ["100.0%", "50.0%"]
    assert row(text, biography, ["vanilla.nopretrain"])[1:] == ["0.0%", "50.0%"]
    assert "Right in every pretrained run and in no run without pretraining: 2 of 4 questions." in text
    assert "Right in no run: 1 of 4 questions." in text


def test_a_bf16_run_is_listed_when_it_has_predictions_and_counts_as_pretrained(tmp_path):
    text = analysis.analysis(*write_files(tmp_path, {
        "vanilla.pretrain.seed0.dev.predictions": ["London", "Beijing", "Boston", "Paris"],
        "vanilla.pretrain.bf16.seed0.dev.predictions": ["London", "Rome", "Boston", "Paris"],
        "vanilla.nopretrain.seed0.dev.predictions": ["Rome", "Beijing", "Boston", "Rome"],
    }))
    assert row(text, "Accuracy", ["vanilla.pretrain.bf16"])[1:] == ["1", "2/4 (50.0%)", "-", "-", "50.0% (one seed)"]
    assert "rope.pretrain.bf16" not in text  # no predictions: not asked for
    # London and Paris: right in both pretrained runs, wrong without pretraining
    assert "Right in every pretrained run and in no run without pretraining: 2 of 4 questions." in text


def test_output_file_holds_what_is_printed(tmp_path, monkeypatch, capsys):
    dev, wiki, report = write_files(tmp_path, {"vanilla.pretrain.seed0.dev.predictions": ["London"] * 4})
    output = tmp_path / "analysis.md"
    monkeypatch.setattr(sys, "argv", ["analyze_predictions.py", "--dev", dev, "--wiki", wiki,
                                      "--report_dir", report, "--output", str(output)])
    analysis.main()
    assert output.read_text(encoding="utf-8") == capsys.readouterr().out
    assert "| vanilla.pretrain | 1 | 1/4 (25.0%) |" in output.read_text(encoding="utf-8")


@pytest.mark.parametrize("predictions, message", [
    ({"perceiver.pretrain.seed0.dev.predictions": ["London"] * 3},
     "perceiver.pretrain.seed0.dev.predictions has 3 lines, {dev} has 4 questions"),
    ({"vanilla.seed1.dev.predictions": ["London"] * 4},  # the old name: not picked up
     "no <run>.seed<N>.dev.predictions files in {report}"),
])
def test_bad_input_is_one_line_naming_the_file(tmp_path, monkeypatch, predictions, message):
    dev, wiki, report = write_files(tmp_path, predictions)
    monkeypatch.setattr(sys, "argv", ["analyze_predictions.py", "--dev", dev, "--wiki", wiki,
                                      "--report_dir", report])
    with pytest.raises(SystemExit) as exit:
        analysis.main()
    assert str(exit.value).startswith("analyze_predictions.py: ")
    assert message.format(dev=dev, report=report) in str(exit.value)
    assert "\n" not in str(exit.value)


def test_loss_table_averages_the_window_up_to_each_step_and_leaves_unreached_steps_blank(
        tmp_path, monkeypatch, capsys):
    from torch.utils.tensorboard import SummaryWriter
    import loss_table
    for name, last_step in (("long_pt_lr_0.006", 200), ("short_pt_lr_0.006", 50)):
        with SummaryWriter(str(tmp_path / name)) as writer:
            for step in range(0, last_step + 1, 10):
                writer.add_scalar("train/loss", step / 10, step)
    monkeypatch.setattr(sys, "argv", ["loss_table.py", str(tmp_path / "long_pt_lr_0.006"),
                                      str(tmp_path / "short_pt_lr_0.006"),
                                      "--steps", "50,100", "--window", "30"])
    loss_table.main()
    header, long_run, short_run = capsys.readouterr().out.splitlines()
    assert header.split() == ["run", "50", "100"]
    assert long_run.split() == ["long", "4.000", "9.000"]  # steps 30-50: losses 3,4,5; 80-100: 8,9,10
    assert short_run.split() == ["short", "4.000"]  # it stopped at step 50


def test_loss_table_refuses_a_folder_without_losses_before_printing_anything(
        tmp_path, monkeypatch, capsys):
    import loss_table
    monkeypatch.setattr(sys, "argv", ["loss_table.py", str(tmp_path)])
    with pytest.raises(SystemExit) as exit:
        loss_table.main()
    assert str(exit.value) == f"loss_table.py: {tmp_path}: no train/loss logged there"
    assert capsys.readouterr().out == ""


def test_name_share_is_the_answer_rows_weight_on_the_name():
    # "Where was Ann born?" and its MASK (20 characters, the name at 10-12), then two answer characters
    prefix, name_length, prompt_length, read = len(analysis.QUESTION_PREFIX), 3, 20, 22
    weights = torch.zeros(2, read, read)
    weights[:, :, 0] = 1.0  # head 1 looks only at the first character
    weights[0, :prompt_length - 1, 0] = 0.0
    weights[0, :prompt_length - 1, prefix + 1] = 1.0  # the question's own rows do not count
    for row, share in zip(range(prompt_length - 1, read), (0.9, 0.6, 0.3)):  # the MASK's row, then the answer's
        weights[0, row, 0] = 1 - share
        weights[0, row, prefix] = weights[0, row, prefix + name_length - 1] = share / 2  # the name's ends
    shares = attention_on_name.name_share(weights, prompt_length, name_length)
    assert shares.tolist() == pytest.approx([0.6, 0.0])
    even = attention_on_name.even_share(prompt_length, read, name_length)
    assert even == pytest.approx((3 / 20 + 3 / 21 + 3 / 22) / 3)
