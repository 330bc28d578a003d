"""The accuracy of answering "London" to every question of the dev set (the bar to beat)."""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))
import utils  # noqa: E402


def main():
    argp = argparse.ArgumentParser(description=__doc__)
    argp.add_argument("eval_corpus_path", nargs="?", default="birth_dev.tsv")
    args = argp.parse_args()
    with open(args.eval_corpus_path, encoding="utf-8") as f:
        predicted_places = ["London"] * len(f.readlines())
    total, correct = utils.evaluate_places(args.eval_corpus_path, predicted_places)
    if total > 0:
        print(f"Correct: {correct} out of {total}: {correct / total * 100}%")


if __name__ == "__main__":
    main()
