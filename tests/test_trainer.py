"""
The optimizer and the learning-rate schedule, as the original trainer has them (README.md "What
differs"); and what this trainer adds without changing the gradient: slices of a batch, torchrun's
processes, compiling, precisions.
"""
import math
import os
import subprocess
import sys

import pytest
import torch

import attention
import distributed_worker
import model
import trainer

original_attend = attention.attend


def make_trainer(**options):
    gpt = model.GPT(model.GPTConfig(10, 8, n_layer=1, n_head=2, n_embd=16, synthesizer=True))
    config = trainer.TrainerConfig(learning_rate=1.0, lr_decay=True, warmup_tokens=100,
                                   final_tokens=1100, device="cpu", **options)
    return trainer.Trainer(gpt, None, None, config)


@pytest.mark.parametrize("tokens, multiplier", [
    (0, 0.0), (50, 0.5), (100, 1.0),                    # linear warmup
    (600, 0.5), (1100, 0.1),                            # cosine down to 10% at final_tokens
    (850, max(0.1, 0.5 * (1 + math.cos(math.pi * 0.75)))),
    (2100, 1.0),                                        # the original's cosine keeps turning
])
def test_learning_rate_warms_up_then_follows_the_cosine(tokens, multiplier):
    t = make_trainer()
    t.tokens = tokens
    assert t.learning_rate() == pytest.approx(multiplier)


def test_weight_decay_spares_exactly_the_biases():
    t = make_trainer()
    decay, no_decay = t.configure_optimizer().param_groups
    names = {id(p): n for n, p in t.model.named_parameters()}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(names[id(p)].endswith("bias") for p in no_decay["params"])
    assert {names[id(p)] for p in decay["params"]} >= {"blocks.0.attn.w2", "blocks.0.attn.b2", "pos_emb",
                                                       "ln_f.weight"}
    assert decay["betas"] == (0.9, 0.95)


def test_training_lowers_the_loss_and_counts_every_target_position():
    torch.manual_seed(0)
    x = torch.randint(1, 10, (32, 7))
    data = [(row, row % 9 + 1) for row in x]  # each target is a function of its input
    t = make_trainer(max_epochs=20, batch_size=8)
    t.config.learning_rate = 3e-2
    before = t.model(x, torch.stack([y for _, y in data]))[1].item()
    t.train_dataset = data
    t.train()
    after = t.model.eval()(x, torch.stack([y for _, y in data]))[1].item()
    assert after < before / 2
    t.test_dataset = data  # the test loss is the mean over equal batches: the loss on all of them
    assert t.test_loss() == pytest.approx(after, rel=1e-5)
    assert t.tokens == 20 * 32 * 7


def test_epoch_batches_are_permutations_and_resume_where_they_stopped():
    batches = list(trainer.EpochBatches(10, 4, 3, seed=5))
    assert [len(b) for b in batches] == [4, 4, 2] * 3
    epochs = [sum(batches[i:i + 3], []) for i in (0, 3, 6)]
    assert all(sorted(e) == list(range(10)) for e in epochs)
    assert epochs[0] != epochs[1]
    assert list(trainer.EpochBatches(10, 4, 3, seed=5, start_step=4)) == batches[4:]


def test_epoch_batches_go_in_the_datasets_order_without_a_seed():
    assert list(trainer.EpochBatches(10, 4, 2)) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]] * 2
    assert list(trainer.EpochBatches(10, 4, 2, start_step=4)) == [[4, 5, 6, 7], [8, 9]]


class IndexDataset:
    """Ten examples that record the order in which they are asked for."""

    def __init__(self):
        self.asked = []

    def __len__(self):
        return 10

    def __getitem__(self, idx):
        self.asked.append(idx)
        return torch.full((7,), idx % 9 + 1), torch.full((7,), idx % 9 + 1)


@pytest.mark.parametrize("shuffle", [False, True])
def test_every_epoch_visits_the_examples_in_order_unless_shuffled(shuffle):
    data = IndexDataset()
    t = make_trainer(max_epochs=3, batch_size=4, **({"shuffle": True} if shuffle else {}))  # in order by default
    t.train_dataset = data
    t.train()
    epochs = [data.asked[i:i + 10] for i in (0, 10, 20)]
    assert all(sorted(e) == list(range(10)) for e in epochs)
    if shuffle:
        assert len({tuple(e) for e in epochs}) == 3
    else:
        assert epochs == [list(range(10))] * 3  # as the original's DataLoader, which does not shuffle


def batch_with_padding():
    torch.manual_seed(0)
    x = torch.randint(1, 10, (4, 7))
    y = torch.randint(1, 10, (4, 7))
    y[:, :5] = 0  # PAD targets, as before the answer of a NameDataset example
    return x, y


def test_a_step_clips_the_gradient_norm_to_1():
    t = make_trainer()
    with torch.no_grad():
        t.model.head.weight.mul_(100)  # large logits, large gradients
    x, y = batch_with_padding()
    loss = t.model(x, y)[1]
    loss.backward()
    assert torch.nn.utils.get_total_norm([p.grad for p in t.model.parameters()]) > 10
    t.step(x, y, t.configure_optimizer())  # the gradients stay in .grad after the step
    assert torch.nn.utils.get_total_norm([p.grad for p in t.model.parameters()]) == pytest.approx(1.0, abs=1e-4)


def test_a_step_counts_every_target_position_and_sets_the_next_rate_after_stepping():
    t = make_trainer()
    t.config.learning_rate, t.config.warmup_tokens = 1e-2, 10 ** 9  # the scheduled rate stays near 0 a long time
    optimizer = t.configure_optimizer()
    before = [p.detach().clone() for p in t.model.parameters()]
    x, y = batch_with_padding()
    t.step(x, y, optimizer)
    assert t.tokens == y.numel()  # the PAD positions count too, as in the original
    # the first step runs at the optimizer's initial rate, the full one: Adam moves a weight by about it
    moved = max((p.detach() - b).abs().max().item() for p, b in zip(t.model.parameters(), before))
    assert moved > 0.5e-2
    assert all(g["lr"] == pytest.approx(1e-2 * y.numel() / 10 ** 9) for g in optimizer.param_groups)


def one_step(x, y, **options):
    """The loss and the gradients of one step of the tiny model, without dropout, on (x, y)."""
    gpt = distributed_worker.tiny_model()
    t = trainer.Trainer(gpt, None, None, trainer.TrainerConfig(device="cpu", **options))
    loss = t.step(x, y, t.configure_optimizer())
    return loss, {n: p.grad for n, p in gpt.named_parameters()}


def first_examples(n):
    return (torch.stack(t) for t in zip(*distributed_worker.examples()[:n]))


def test_micro_batches_give_the_gradient_of_the_whole_batch():
    x, y = first_examples(7)  # 8, 7, ..., 2 targets that count
    whole_loss, whole_grads = one_step(x, y)
    sliced_loss, sliced_grads = one_step(x, y, micro_batch_size=3)  # slices of 3, 3 and 1 examples
    assert sliced_loss.item() == pytest.approx(whole_loss.item(), rel=1e-6)
    for name, grad in whole_grads.items():
        torch.testing.assert_close(sliced_grads[name], grad, rtol=1e-5, atol=1e-7)


def test_two_processes_train_as_one(tmp_path):
    """torchrun, 2 CPU processes (gloo): each trains on its share of every batch, in slices."""
    worker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "distributed_worker.py")
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                    worker, str(tmp_path / "params")], check=True, timeout=300, capture_output=True)
    rank0, rank1 = (torch.load(tmp_path / f"params.rank{r}", weights_only=True) for r in (0, 1))
    one_process = distributed_worker.train()
    for name, value in one_process.items():
        assert torch.equal(rank0[name], rank1[name]), name
        # the key bias moves every score of a query alike: its gradient is 0 but for rounding,
        # which AdamW's normalisation turns into full-sized steps
        if not name.startswith("blocks.0.attn.key.bias"):
            torch.testing.assert_close(rank0[name], value, rtol=1e-4, atol=1e-5)
    assert not torch.equal(one_process["head.weight"], distributed_worker.tiny_model().head.weight)


def test_the_compiled_step_is_the_eager_step():
    x, y = first_examples(6)
    eager_loss, eager_grads = one_step(x, y)
    compiled_loss, compiled_grads = one_step(x, y, compile=True)
    assert compiled_loss.item() == pytest.approx(eager_loss.item(), rel=1e-5)
    for name, grad in eager_grads.items():
        torch.testing.assert_close(compiled_grads[name], grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("precision, products", [("fp32", torch.float32), ("tf32", torch.float32),
                                                 ("bf16", torch.bfloat16)])
def test_every_precision_trains(precision, products, monkeypatch):
    seen = []  # the dtypes of a projection's output and of the queries that attention gets
    monkeypatch.setattr(attention, "attend",
                        lambda q, *args: seen.append(("attention", q.dtype)) or original_attend(q, *args))
    gpt = distributed_worker.tiny_model()
    gpt.blocks[0].attn.value.register_forward_hook(lambda m, i, out: seen.append(("projection", out.dtype)))
    x, y = first_examples(14)
    t = trainer.Trainer(gpt, list(zip(x, y)), None, trainer.TrainerConfig(
        max_epochs=30, batch_size=7, learning_rate=3e-2, device="cpu", precision=precision))
    before = gpt(x, y)[1].item()
    seen.clear()
    t.train()
    assert set(seen) == {("projection", products), ("attention", torch.float32)}
    assert gpt(x, y)[1].item() < before / 2
