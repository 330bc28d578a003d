"""
Draw the attention weights a trained model used while answering one question: one panel per
layer and head, the characters it read on the axes (queries down, keys across). The perceiver's
first and last layers attend between the characters and its basis C_0..C_m-1; the synthesizer's
maps are its synthesized weights.

    python scripts/attention_map.py vanilla wiki.txt --reading_params_path vanilla.finetune.params \
        --question "Where was Ada Lovelace born?" --outputs_path attention.png
"""
import argparse
import os
import sys
import warnings

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
import dataset  # noqa: E402
import model  # noqa: E402
import run  # noqa: E402
import utils  # noqa: E402


def shown(c):
    return "␣" if c == " " else c


def draw(maps, read, title, bottleneck_dim):
    """A figure of every layer's (rows) and head's (columns) weights over the characters `read`."""
    basis = [f"C{j}" for j in range(bottleneck_dim or 0)]
    n_layers, n_heads = len(maps), maps[0][1].size(1)
    fig, axes = plt.subplots(n_layers, n_heads, figsize=(2.2 * n_heads, 2.4 * n_layers), squeeze=False)
    fontsize = max(2.0, min(6.0, 200 / len(read)))
    for row, (name, weights) in enumerate(maps):
        queries, keys = weights.shape[2:]
        # the characters label an axis of the input's length, the basis one of the bottleneck's
        query_labels = read if queries == len(read) else basis[:queries]
        key_labels = read if keys == len(read) else basis[:keys]
        for head in range(n_heads):
            ax = axes[row][head]
            ax.imshow(weights[0, head].numpy(), cmap="viridis", vmin=0, vmax=1, aspect="auto")
            ax.set_xticks(range(keys), [shown(c) for c in key_labels], fontsize=fontsize, rotation=90)
            ax.set_yticks(range(queries), [shown(c) for c in query_labels], fontsize=fontsize)
            ax.tick_params(length=0, pad=1)
            ax.set_title(f"{name} head {head}", fontsize=6)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def load_model(args):
    """The vocabulary's dataset and the model of args.variant with args.reading_params_path loaded."""
    corpus = dataset.CharCorruptionDataset(run.read_text(args.pretrain_corpus_path, "pretraining corpus"),
                                           run.BLOCK_SIZE, name=args.pretrain_corpus_path)
    gpt = run.build_model(args.variant, args.bottleneck_dim, corpus.vocab_size)
    run.load_params(gpt, args.reading_params_path, args)
    return corpus, gpt


def answer_with_maps(gpt, corpus, question):
    """
    Answer as evaluation does, then replay what the model read: the prompt (the question less
    characters the vocabulary lacks, and its MASK), then the answer it wrote (the closing MASK it
    wrote last was never read). Returns (prompt, read, answer, maps of that replay).
    """
    prompt = run.prompt_text(question, corpus)
    completion = utils.greedy_decode(gpt, [corpus.encode(prompt)], run.ANSWER_STEPS,
                                     stop_id=corpus.stoi[dataset.MASK_CHAR])[0]
    read = prompt + "".join(corpus.itos[i] for i in completion[:-1])
    answer = "".join(corpus.itos[i] for i in completion).split(dataset.MASK_CHAR)[0]
    _, maps = gpt.attention_maps(corpus.encode(read)[None])
    return prompt, read, answer, maps


def main(argv=None):
    warnings.filterwarnings("ignore", message="Glyph .* missing from font")  # such characters show as boxes
    argp = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    argp.add_argument("variant", choices=list(model.VARIANTS))
    argp.add_argument("pretrain_corpus_path", help="the pretraining corpus (wiki.txt); gives the vocabulary")
    argp.add_argument("--reading_params_path", required=True, help="the trained params")
    argp.add_argument("--question", required=True, help='e.g. "Where was Ada Lovelace born?"')
    argp.add_argument("--outputs_path", default="attention.png", help="the PNG to write (default: %(default)s)")
    argp.add_argument("--bottleneck_dim", type=int, default=32, help="perceiver basis length m (default: %(default)s)")
    args = argp.parse_args(argv)

    corpus, gpt = load_model(args)
    run.check_question_length(gpt, args.question, "--question")
    _, read, answer, maps = answer_with_maps(gpt, corpus, args.question)

    title = f"{args.variant}, {os.path.basename(args.reading_params_path)}: {args.question} → {answer}"
    fig = draw(maps, read, title, args.bottleneck_dim if args.variant == "perceiver" else None)
    utils.write_atomically(args.outputs_path, lambda f: fig.savefig(f, format="png", dpi=150), mode="wb")
    print(f"answer: {answer}")
    print(f"wrote {args.outputs_path}")


if __name__ == "__main__":
    try:
        main()
    except dataset.UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
