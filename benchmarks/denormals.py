"""
How much denormal numbers (below float32's smallest normal, 1.2e-38) slow training on a CPU: the
forward and backward passes of one pretraining batch (128 span-corruption examples of wiki.txt, in
slices of 64 as run.py trains on a CPU) from the given weights, each setting in a fresh process:
denormals counted as zero (run.py's way, trainer.set_precision) and kept (torch's default).

    python benchmarks/denormals.py VARIANT [WEIGHTS] [--bottleneck_dim 64] [--repeats 5]

WEIGHTS is a params file or a run.py checkpoint; without it the weights are untrained. Prints each
setting's median time of --repeats passes and, with denormals kept, the share of the values saved
for the backward pass that are denormal. This is a benchmark, not a test: it checks nothing.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
import dataset  # noqa: E402
import run  # noqa: E402
import trainer  # noqa: E402


def denormal_count(t):
    magnitude = t.detach().abs()
    return int(((magnitude > 0) & (magnitude < torch.finfo(torch.float32).tiny)).sum())


def measure(args, flush):
    """One setting, in this process: {"seconds": median pass time, "denormal_share": ...}."""
    if flush:
        trainer.set_precision("fp32")  # before any parallel operation, as run.py does
    corpus = dataset.CharCorruptionDataset(open("wiki.txt", encoding="utf-8").read(), run.BLOCK_SIZE)
    gpt = run.build_model(args.variant, args.bottleneck_dim, corpus.vocab_size)
    if args.weights:
        state = torch.load(args.weights, map_location="cpu", weights_only=False)
        gpt.load_state_dict(state.get("model", state))  # a checkpoint holds the params under "model"
    torch.manual_seed(0)
    x, y = (torch.stack(column) for column in zip(*(corpus[i] for i in range(128))))
    saved = [0, 0]  # denormal values, all values saved for the backward pass

    def count_saved(t):
        if t.dtype == torch.float32:
            saved[0] += denormal_count(t)
            saved[1] += t.numel()
        return t

    def one_pass():
        gpt.zero_grad()
        for xs, ys in zip(x.split(64), y.split(64)):
            (gpt(xs, ys)[1] / 2).backward()

    with torch.autograd.graph.saved_tensors_hooks(count_saved, lambda t: t):
        one_pass()  # warms up, untimed
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        one_pass()
        times.append(time.perf_counter() - start)
    return {"seconds": statistics.median(times), "denormal_share": saved[0] / saved[1]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variant", choices=["vanilla", "perceiver", "synthesizer", "rope"])
    parser.add_argument("weights", nargs="?")
    parser.add_argument("--bottleneck_dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--setting", choices=["flush", "keep"], help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.setting:
        print(json.dumps(measure(args, args.setting == "flush")))
        return
    print(f"{args.variant}, weights {args.weights or 'untrained'}, {torch.get_num_threads()} threads")
    results = {}
    for setting in ("keep", "flush"):
        child = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--setting", setting],
                               capture_output=True, text=True, check=True)
        results[setting] = json.loads(child.stdout.splitlines()[-1])
        print(f"  denormals {'kept' if setting == 'keep' else 'counted as zero'}: "
              f"{results[setting]['seconds']:.3f} s a batch, "
              f"{results[setting]['denormal_share']:.2%} of the saved values denormal")
    print(f"  speed-up: {results['keep']['seconds'] / results['flush']['seconds']:.2f}x")


if __name__ == "__main__":
    main()
