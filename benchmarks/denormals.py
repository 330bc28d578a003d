"""
How much denormal numbers (below float32's smallest normal, 1.2e-38) slow training on a CPU: the
time of a pretraining step from the given weights (batches of 128 span-corruption examples of
wiki.txt, in slices of 64 as run.py trains on a CPU, optimizer included), each setting in a fresh
process on the same batches: denormals counted as zero (run.py's way, trainer.set_precision) and
kept (torch's default).

    python benchmarks/denormals.py VARIANT [WEIGHTS] [--bottleneck_dim 64] [--steps 5]

WEIGHTS is a params file or a run.py checkpoint; without it the weights are untrained. Prints each
setting's mean time of --steps steps (after speed.py's warm-up steps) and the share of the values
that the first batch's forward pass saves for the backward pass that are denormal. This is a
benchmark, not a test: it checks nothing.
"""
import argparse
import json
import os
import random
import subprocess
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
import dataset  # noqa: E402
import run  # noqa: E402
import speed  # noqa: E402
import trainer  # noqa: E402


def denormal_share(gpt, x, y):
    """The share of the float32 values that the forward pass of (x, y) saves for backward that are denormal."""
    counts = [0, 0]  # denormal values, all values

    def count(t):
        if t.dtype == torch.float32:
            magnitude = t.detach().abs()
            counts[0] += int(((magnitude > 0) & (magnitude < torch.finfo(torch.float32).tiny)).sum())
            counts[1] += t.numel()
        return t

    with torch.autograd.graph.saved_tensors_hooks(count, lambda t: t):
        gpt(x, y)
    return counts[0] / counts[1]


def measure(args, flush):
    """One setting, in this process: {"seconds": mean step time, "denormal_share": ...}."""
    if flush:
        trainer.set_precision("fp32")  # before any parallel operation, as run.py does
    random.seed(0)  # the same corruptions (Python's generator) and dropout masks in both settings
    torch.manual_seed(0)
    corpus = dataset.CharCorruptionDataset(open("wiki.txt", encoding="utf-8").read(), run.BLOCK_SIZE)
    gpt = run.build_model(args.variant, args.bottleneck_dim, corpus.vocab_size)
    if args.weights:
        state = torch.load(args.weights, map_location="cpu", weights_only=False)
        gpt.load_state_dict(state.get("model", state))  # a checkpoint holds the params under "model"
    batches = speed.pretraining_batches(corpus, run.RECIPE["pretrain"]["batch_size"], speed.WARMUP_STEPS + args.steps)
    share = denormal_share(gpt, *batches[0])
    timing = speed.time_training(gpt, batches, "cpu", baseline=False, micro_batch_size=run.CPU_MICRO_BATCH)
    return {"seconds": timing["step_ms"] / 1e3, "denormal_share": share}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variant", choices=["vanilla", "perceiver", "synthesizer", "rope"])
    parser.add_argument("weights", nargs="?")
    parser.add_argument("--bottleneck_dim", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5, help="timed steps")
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
              f"{results[setting]['seconds']:.3f} s a step, "
              f"{results[setting]['denormal_share']:.2%} of the saved values denormal")
    print(f"  speed-up: {results['keep']['seconds'] / results['flush']['seconds']:.2f}x")


if __name__ == "__main__":
    main()
