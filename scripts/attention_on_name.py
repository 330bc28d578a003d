"""
How much the answer looks at the person's name: answer every question of a question<TAB>place file
as evaluation does, replay what the model read (as attention_map.py does), and print, for each
layer and head, the share of attention weight that the positions writing the answer (the question's
MASK and the answer's characters) put on the name's characters, averaged over right and over wrong
answers, beside what attention spread evenly over the characters read so far would put there.

    python scripts/attention_on_name.py vanilla wiki.txt --reading_params_path vanilla.finetune.params \
        --eval_corpus_path birth_dev.tsv

The perceiver is left out: its characters attend only to its basis, never to each other.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import analyze_predictions  # noqa: E402
import attention_map  # noqa: E402
import dataset  # noqa: E402  (src/, on the path through attention_map)
import model  # noqa: E402
import run  # noqa: E402


def name_share(weights, prompt_length, name_length):
    """
    weights (heads, T, T) of one replay whose prompt of prompt_length characters (MASK included)
    holds the name right after QUESTION_PREFIX: each head's share of attention from the
    answer-writing rows (the prompt's MASK on) to the name's keys, averaged over those rows.
    """
    start = len(analyze_predictions.QUESTION_PREFIX)
    rows = weights[:, prompt_length - 1:, :]
    return rows[:, :, start:start + name_length].sum(-1).mean(-1)


def even_share(prompt_length, read_length, name_length):
    """name_share under attention spread evenly over each answer-writing row's causal prefix."""
    positions = torch.arange(prompt_length - 1, read_length, dtype=torch.float)
    return (name_length / (positions + 1)).mean().item()


def main(argv=None):
    argp = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    argp.add_argument("variant", choices=[v for v in model.VARIANTS if v != "perceiver"])
    argp.add_argument("pretrain_corpus_path", help="the pretraining corpus (wiki.txt); gives the vocabulary")
    argp.add_argument("--reading_params_path", required=True, help="the trained params")
    argp.add_argument("--eval_corpus_path", required=True, help="question<TAB>place lines, e.g. birth_dev.tsv")
    args = argp.parse_args(argv)
    args.bottleneck_dim = None  # no perceiver, no basis

    try:
        lines, people = analyze_predictions.read_questions(args.eval_corpus_path)
    except (OSError, ValueError) as e:
        raise dataset.UserError(str(e))
    corpus, gpt = attention_map.load_model(args)
    shares = {True: [], False: []}  # answered right or not -> each question's (layer, head) shares
    even = []
    for lineno, (line, (name, place)) in enumerate(zip(lines, people), start=1):
        question = line.split("\t")[0]
        run.check_question_length(gpt, question, f"{args.eval_corpus_path}: line {lineno}")
        prompt, read, answer, maps = attention_map.answer_with_maps(gpt, corpus, question)
        name_length = sum(c in corpus.stoi for c in name)  # as the prompt holds it
        shares[answer == place].append(torch.stack([name_share(weights[0], len(prompt), name_length)
                                                    for _, weights in maps]))
        even.append(even_share(len(prompt), len(read), name_length))

    means = {right: torch.stack(s).mean(0) if s else None for right, s in shares.items()}
    print(f"{args.variant}, {args.reading_params_path}, {args.eval_corpus_path}: {len(lines)} questions, "
          f"{len(shares[True])} answered right")
    print(f"share of attention from the answer to the name (spread evenly: {sum(even) / len(even):.3f})")
    print(f"{'layer':<16} {'head':>4} {'right':>6} {'wrong':>6}")
    for layer, (layer_name, weights) in enumerate(maps):
        for head in range(weights.size(1)):
            cells = [f"{'':>6}" if means[right] is None else f"{means[right][layer, head]:6.3f}"
                     for right in (True, False)]
            print(f"{layer_name:<16} {head:>4} {' '.join(cells)}")


if __name__ == "__main__":
    try:
        main()
    except dataset.UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
