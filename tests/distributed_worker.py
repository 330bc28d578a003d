"""
Trains a tiny model, without dropout, on a fixed dataset whose examples count different numbers of
targets: in one process (train(), from the tests) or as one of torchrun's processes:

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/distributed_worker.py OUT

where each process saves its params, and the gradients of its last step, to OUT.rank<r>.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))
import model  # noqa: E402
import trainer  # noqa: E402


def examples():
    x = torch.randint(1, 10, (14, 8), generator=torch.Generator().manual_seed(0))
    y = x % 9 + 1
    for i, row in enumerate(y):
        row[:i % 8] = model.GPT.ignore_index  # example i has 8 - i % 8 targets that count
    return list(zip(x, y))


def tiny_model():
    torch.manual_seed(0)
    return model.GPT(model.GPTConfig(10, 8, n_layer=1, n_head=2, n_embd=16,
                                     embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0))


def train(**options):
    """Three epochs of batches of 6, 6 and 2 examples; returns the trained model's params and the
    gradients of its last step (not clipped, so that a wrong scale shows: AdamW's steps hide it)."""
    gpt = tiny_model()
    config = trainer.TrainerConfig(max_epochs=3, batch_size=6, learning_rate=3e-2, device="cpu",
                                   grad_norm_clip=float("inf"), **options)
    trainer.Trainer(gpt, examples(), None, config).train()
    return {**gpt.state_dict(), **{f"{n}.grad": p.grad for n, p in gpt.named_parameters()}}


if __name__ == "__main__":
    rank, _ = trainer.init_distributed("cpu")
    torch.save(train(micro_batch_size=2), f"{sys.argv[1]}.rank{rank}")
