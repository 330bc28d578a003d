"""
Error analysis of the dev predictions of every run and seed kept in report/, under the results
issue's names report/<run>.seed<N>.dev.predictions, printed as markdown:

    python scripts/analyze_predictions.py [--output report/analysis.md]

- accuracy: each seed's, and the mean and sample standard deviation over a run's seeds;
- significance: for each pair of runs, a paired bootstrap over the questions and McNemar's
  exact test on the two seed-0 models;
- agreement: how often two seeds of a run, or the seed-0 models of two runs, give the same
  answer, and how often both are right;
- biography: whether the person's line in wiki.txt names the gold place, and each run's
  accuracy where it does and where it does not;
- examples of questions that every run, only the pretrained runs, or no run answers right, and
  of right answers that the biography does not hold.

A prediction is right when it equals the gold place exactly, the rule of utils.evaluate_places.
"""
import argparse
import itertools
import math
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
import utils  # noqa: E402

RUNS = ("vanilla.nopretrain", "vanilla.pretrain", "perceiver.pretrain", "synthesizer.pretrain",
        "rope.pretrain")
# the pretrained runs in bfloat16, which the results issue asks for only once bf16 trains as well
BF16_RUNS = tuple(f"{run}.bf16" for run in RUNS[1:])
SEEDS = (0, 1, 2)  # the seeds the results issue asks of every run
QUESTION_PREFIX, QUESTION_SUFFIX = "Where was ", " born?"
RESAMPLES = 10_000
EXAMPLES = 5  # questions shown per kind of example
PREDICTIONS_NAME = re.compile(r"(?P<run>.+)\.seed(?P<seed>\d+)\.dev\.predictions")


# -----------------------------------------------------------------------------
# reading the files

def read_questions(path):
    """The lines of a question<TAB>place file, and the (name, gold place) of each."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    people = []
    for number, line in enumerate(lines, 1):
        question, place = utils.split_question_line(line)
        if not (place is not None and question.startswith(QUESTION_PREFIX) and question.endswith(QUESTION_SUFFIX)):
            raise ValueError(f"{path}, line {number}: not 'Where was NAME born?<TAB>place'")
        people.append((question[len(QUESTION_PREFIX):-len(QUESTION_SUFFIX)], place))
    if not people:
        raise ValueError(f"{path} has no questions")
    return lines, people


def read_predictions(path, dev_path, count):
    with open(path, encoding="utf-8") as f:
        predictions = [line.rstrip("\n") for line in f]
    if len(predictions) != count:
        raise ValueError(f"{path} has {len(predictions)} lines, {dev_path} has {count} questions")
    return predictions


def find_prediction_files(report_dir):
    """{run: {seed: path}} for each report/<run>.seed<N>.dev.predictions, runs in RUNS' then BF16_RUNS' order."""
    files = {}
    for name in os.listdir(report_dir):
        match = PREDICTIONS_NAME.fullmatch(name)
        if match and match["run"] in RUNS + BF16_RUNS:
            files.setdefault(match["run"], {})[int(match["seed"])] = os.path.join(report_dir, name)
    if not files:
        raise ValueError(f"no <run>.seed<N>.dev.predictions files in {report_dir}")
    return {run: dict(sorted(files[run].items())) for run in RUNS + BF16_RUNS if run in files}


def correctness(dev_lines, predictions):
    """A bool per question: utils' exact-match rule, applied to one question at a time."""
    return np.array([utils.count_correct_places([line], [p])[1] == 1
                     for line, p in zip(dev_lines, predictions)])


def biographies(names, wiki_lines):
    """Each name's lines in wiki.txt. A biography starts with the person's name and a full stop
    ("Ada Lovelace. Augusta Ada King..."); a name has none, one, or several (namesakes)."""
    return {name: [line for line in wiki_lines if line.startswith(name + ". ")] for name in names}


def place_in_biography(place, lines):
    return any(place in line for line in lines)


# -----------------------------------------------------------------------------
# statistics

def mean_sd(values):
    """Mean and sample standard deviation (n - 1 in the denominator); no sd for one value."""
    values = np.asarray(values, dtype=float)
    return values.mean(), (values.std(ddof=1) if len(values) > 1 else None)


def mcnemar_exact(a_right, b_right):
    """
    McNemar's exact test of two models on the same questions. Only the discordant questions
    count: b where A is right and B wrong, c where A is wrong and B right. If the two models were
    equally accurate, each discordant question would go either way with probability 1/2, so the
    two-sided p-value is twice the chance of a split at least as uneven under Binomial(b + c, 1/2).
    Returns b, c, p.
    """
    b = int(np.sum(a_right & ~b_right))
    c = int(np.sum(~a_right & b_right))
    tail = sum(math.comb(b + c, k) for k in range(min(b, c) + 1)) / 2 ** (b + c)
    return b, c, min(1.0, 2 * tail)


def paired_bootstrap(a_scores, b_scores, resamples=RESAMPLES, seed=0):
    """
    The difference in accuracy, A - B in points, of two runs on the same questions, with a 95%
    interval and a two-sided p-value, from resampling the questions with replacement.

    A score is a question's share of a run's seeds that answer it right, so a run with several
    seeds counts as their average. Resampling whole questions keeps the pairing: an easy question
    is drawn for both runs at once. What is tested: whether these runs' difference would hold on
    other questions like these (null: equal expected accuracy per question). The spread between
    retrainings enters only through the seeds averaged; with one seed per run it is not tested.
    The p-value is the share of resampled differences, shifted to centre on 0 as the null has it,
    at least as far from 0 as the observed one, counting the observed one among them (never 0).
    """
    difference = (np.asarray(a_scores, dtype=float) - np.asarray(b_scores, dtype=float)) * 100
    rng = np.random.default_rng(seed)
    # each row a resample: len(difference) questions drawn with replacement
    questions = rng.integers(0, len(difference), size=(resamples, len(difference)))
    resampled = difference[questions].mean(axis=1)
    observed = difference.mean()
    low, high = np.percentile(resampled, [2.5, 97.5])
    p = (1 + np.sum(np.abs(resampled - observed) >= abs(observed))) / (1 + resamples)
    return observed, low, high, p


# -----------------------------------------------------------------------------
# the report

def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows] + [""]


def share(count, total):
    return f"{count} ({100 * count / total:.1f}%)"


def p_value(p):
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def accuracy_section(right, total):
    seeds = sorted(set(SEEDS).union(*right.values()))
    rows = []
    for run in RUNS + tuple(run for run in BF16_RUNS if run in right):
        by_seed = right.get(run, {})
        cells = [f"{int(by_seed[s].sum())}/{total} ({100 * by_seed[s].mean():.1f}%)" if s in by_seed
                 else "-" for s in seeds]
        if by_seed:
            mean, sd = mean_sd([100 * r.mean() for r in by_seed.values()])
            summary = f"{mean:.1f}% ± {sd:.1f}" if sd is not None else f"{mean:.1f}% (one seed)"
        else:
            summary = "no predictions yet"
        rows.append([run, len(by_seed)] + cells + [summary])
    return (["## Accuracy", ""]
            + table(["run", "seeds"] + [f"seed {s}" for s in seeds] + ["mean ± sd (points)"], rows))


def significance_section(right, total):
    rows = []
    for a, b in itertools.combinations(right, 2):
        scores = [np.mean(list(right[run].values()), axis=0) for run in (a, b)]
        difference, low, high, p = paired_bootstrap(*scores)
        if 0 in right[a] and 0 in right[b]:
            only_a, only_b, mcnemar_p = mcnemar_exact(right[a][0], right[b][0])
            mcnemar = [only_a, only_b, p_value(mcnemar_p)]
        else:
            mcnemar = ["-", "-", "-"]
        rows.append([a, b, f"{len(right[a])}, {len(right[b])}", f"{difference:+.1f}",
                     f"[{low:+.1f}, {high:+.1f}]", p_value(p), "yes" if p < 0.05 else "no"] + mcnemar)
    return (["## Paired tests between runs", "",
             f"Bootstrap: each question's accuracy averaged over the run's seeds, A - B in points, "
             f"{RESAMPLES:,} resamples of the {total} questions (random seed 0), 95% percentile interval; "
             f"the difference is called significant where its p < 0.05. "
             f"McNemar: exact, on the seed-0 models; 'A only' and 'B only' count the questions "
             f"only that model answers right. {len(rows)} pairs, no correction for multiple tests.", ""]
            + table(["A", "B", "seeds", "A - B", "95% interval", "bootstrap p", "significant",
                     "A only (seed 0)", "B only (seed 0)", "McNemar p"], rows))


def agreement_row(a_predictions, b_predictions, a_right, b_right, total):
    same = sum(p == q for p, q in zip(a_predictions, b_predictions))
    both = int(np.sum(a_right & b_right))  # both right implies the same answer
    return [share(same, total), share(both, total), f"{100 * both / same:.0f}%" if same else "-"]


def agreement_section(predictions, right, total):
    header = ["same answer", "both right", "right where the same"]
    seed_rows = [[run, f"{s} and {t}"] + agreement_row(predictions[run][s], predictions[run][t],
                                                       right[run][s], right[run][t], total)
                 for run in right for s, t in itertools.combinations(right[run], 2)]
    run_rows = [[a, b] + agreement_row(predictions[a][0], predictions[b][0], right[a][0], right[b][0],
                                       total)
                for a, b in itertools.combinations([run for run in right if 0 in right[run]], 2)]
    return (["## Agreement", "", "Between the seeds of a run:", ""]
            + table(["run", "seeds"] + header, seed_rows)
            + ["Between runs, seed 0 of each:", ""]
            + table(["A", "B"] + header, run_rows))


def biography_section(right, people, lines_of, in_biography):
    total = len(people)
    several = sum(len(lines_of[name]) > 1 for name, _ in people)
    missing = [name for name, _ in people if not lines_of[name]]
    rows = []
    for run in right:
        scores = np.mean(list(right[run].values()), axis=0)
        rows.append([run] + [f"{100 * scores[group].mean():.1f}%" if group.any() else "-"
                             for group in (in_biography, ~in_biography)])
    return (["## Is the answer in the biography?", "",
             f"A person's biography is the wiki.txt line that starts with their name and a full stop. "
             f"Found for {total - len(missing)} of the {total} dev people ({several} with several "
             f"lines, namesakes, which all count), for {len(missing)} not"
             + (f" ({', '.join(missing)})" if missing else "")
             + f". The gold place occurs in the biography for {int(in_biography.sum())} questions "
               f"and not for {int((~in_biography).sum())} (a person with no biography counts as not). "
               f"Accuracy is averaged over each run's seeds.", ""]
            + table(["run", f"place in biography ({int(in_biography.sum())} questions)",
                     f"not in it ({int((~in_biography).sum())} questions)"], rows))


def examples_section(predictions, right, people, in_biography):
    count = len(people)
    answered = {run: np.any(list(right[run].values()), axis=0) for run in right}  # by at least one seed
    pretrained = [run for run in right if run.split(".")[1] == "pretrain"]
    others = [run for run in right if run not in pretrained]
    every = np.all(list(answered.values()), axis=0)
    some = np.any(list(answered.values()), axis=0)
    kinds = [("Right in every run", every)]
    if pretrained and others:
        kinds.append(("Right in every pretrained run and in no run without pretraining",
                      np.all([answered[run] for run in pretrained], axis=0)
                      & ~np.any([answered[run] for run in others], axis=0)))
    kinds += [("Right in no run", ~some),
              ("Right in some run although the biography does not name the place", some & ~in_biography)]
    shown_seed = {run: min(right[run]) for run in right}  # seed 0 where the run has it
    lines = ["## Examples", "",
             "A run answers a question right if at least one of its seeds does. Each cell is the "
             "prediction of the run's first seed and, in brackets, how many of its seeds are right; "
             f"the first {EXAMPLES} questions of each kind, in birth_dev.tsv's order.", ""]
    for title, chosen in kinds:
        rows = [[f"Where was {people[i][0]} born?", people[i][1], "yes" if in_biography[i] else "no"]
                + [f"{predictions[run][shown_seed[run]][i]} "
                   f"({sum(int(r[i]) for r in right[run].values())}/{len(right[run])})" for run in right]
                for i in np.flatnonzero(chosen)[:EXAMPLES]]
        lines += [f"{title}: {int(chosen.sum())} of {count} questions.", ""]
        if rows:
            lines += table(["question", "gold", "in biography"] + list(right), rows)
    return lines


def analysis(dev_path, wiki_path, report_dir):
    dev_lines, people = read_questions(dev_path)
    with open(wiki_path, encoding="utf-8") as f:
        lines_of = biographies([name for name, _ in people], f.read().splitlines())
    in_biography = np.array([place_in_biography(place, lines_of[name]) for name, place in people])
    files = find_prediction_files(report_dir)
    predictions = {run: {s: read_predictions(path, dev_path, len(people)) for s, path in seeds.items()}
                   for run, seeds in files.items()}
    right = {run: {s: correctness(dev_lines, p) for s, p in seeds.items()}
             for run, seeds in predictions.items()}
    lines = ["# Error analysis of the dev predictions", "",
             f"{len(people)} questions ({dev_path}); predictions: "
             + ", ".join(path for seeds in files.values() for path in seeds.values()) + ".", ""]
    lines += accuracy_section(right, len(people))
    lines += significance_section(right, len(people))
    lines += agreement_section(predictions, right, len(people))
    lines += biography_section(right, people, lines_of, in_biography)
    lines += examples_section(predictions, right, people, in_biography)
    return "\n".join(lines)


def main():
    argp = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    argp.add_argument("--dev", default="birth_dev.tsv", help="question<TAB>place lines")
    argp.add_argument("--wiki", default="wiki.txt", help="one biography a line")
    argp.add_argument("--report_dir", default="report",
                      help="where the <run>.seed<N>.dev.predictions files are")
    argp.add_argument("--output", help="also write the markdown here")
    args = argp.parse_args()
    try:
        text = analysis(args.dev, args.wiki, args.report_dir)
    except (OSError, ValueError) as e:
        sys.exit(f"analyze_predictions.py: {e}")
    print(text)
    if args.output:
        utils.write_atomically(args.output, lambda f: f.write(text + "\n"))


if __name__ == "__main__":
    main()
