"""
Pretrain a variant for a number of steps with the assignment's recipe (batch 128, peak learning
rate 6e-3, which the schedule reaches at once: its 10,240 warmup tokens are less than one step's
16,256), and record per step what a precision problem shows first: the loss, the gradient's norm
before clipping, the largest attention score and the largest output logit.

    python scripts/precision_probe.py perceiver --bottleneck_dim 64 --precision bf16 --steps 150 \\
        --csv report/probe_perceiver_bf16.csv [--scores_in_bf16] [--device cuda]

--scores_in_bf16 makes the attention scores the way the code did before they were kept in float32
(queries, keys and scores in bfloat16 under autocast), to compare the two. Run it from the
repository root (it reads wiki.txt).
"""
import argparse
import csv
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
import attention  # noqa: E402
import dataset  # noqa: E402
import run  # noqa: E402
import trainer  # noqa: E402
import utils  # noqa: E402


def attend_in_bf16(self, q, k, v, mask, scale=None, bias=None):
    """MultiHeadAttention.attend as it was: under autocast, the scores in bfloat16."""
    return attention.attend(q, k, v, mask, self.attn_drop, self.as_original, scale, bias)


def main():
    argp = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    argp.add_argument("variant", choices=list(run.model.VARIANTS))
    argp.add_argument("--bottleneck_dim", type=int, default=64)
    argp.add_argument("--precision", default="bf16", choices=list(trainer.PRECISIONS))
    argp.add_argument("--scores_in_bf16", action="store_true", help="the attention scores as the code made them before")
    argp.add_argument("--steps", type=int, default=150)
    argp.add_argument("--device", default="auto")
    argp.add_argument("--seed", type=int, default=0)
    argp.add_argument("--csv", required=True, help="where to write one row per step")
    args = argp.parse_args()
    if args.scores_in_bf16:
        attention.MultiHeadAttention.attend = attend_in_bf16
    # run.py's own options and recipe for this pretraining
    run_args = run.parse_args(["pretrain", args.variant, "wiki.txt", "--bottleneck_dim", str(args.bottleneck_dim),
                               "--precision", args.precision, "--device", args.device])
    run.fill_in_device_defaults(run_args, trainer.resolve_device(args.device))
    utils.set_seed(args.seed)
    trainer.set_precision(args.precision)
    corpus = dataset.CharCorruptionDataset(run.read_text("wiki.txt", "pretraining corpus"), run.BLOCK_SIZE)
    gpt = run.build_model(args.variant, args.bottleneck_dim, corpus.vocab_size)
    config = run.trainer_config(run_args, corpus, "pretrain")
    t = trainer.Trainer(gpt, corpus, None, config)

    # the largest score and logit of each step's forward passes, recorded by hooks
    largest = {"score": 0.0, "logit": 0.0}

    def record(name, value):
        largest[name] = max(largest[name], value.detach().abs().max().item())

    def scores_hook(q, k, mask, scale=None, bias=None):
        scale = q.size(-1) ** -0.5 if scale is None else scale
        record("score", (q @ k.transpose(-2, -1)) * scale + (0 if bias is None else bias))

    original_attend = attention.attend
    attention.attend = lambda q, k, v, mask, *rest: scores_hook(q, k, mask, *rest[2:]) or original_attend(
        q, k, v, mask, *rest)
    gpt.head.register_forward_hook(lambda module, inputs, output: record("logit", output))

    optimizer = t.configure_optimizer()
    batches = trainer.EpochBatches(len(corpus), config.batch_size, config.max_epochs)
    loader = torch.utils.data.DataLoader(corpus, batch_sampler=batches)
    gpt.train()
    with open(args.csv, "w", newline="") as f:
        rows = csv.writer(f)
        rows.writerow(["step", "loss", "grad_norm", "largest_score", "largest_logit", "lr"])
        for step, (x, y) in zip(range(args.steps), loader):
            largest.update(score=0.0, logit=0.0)
            loss = t.step(x, y, optimizer).item()
            row = [step, loss, t.grad_norm.item(), largest["score"], largest["logit"], t.learning_rate()]
            rows.writerow(row)
            f.flush()
            print("step {} loss {:.4f} grad_norm {:.3f} largest score {:.1f} largest logit {:.1f} lr {:.2e}"
                  .format(*row))


if __name__ == "__main__":
    main()
