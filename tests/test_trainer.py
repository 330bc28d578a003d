"""The optimizer and the learning-rate schedule, as the original trainer has them (README.md "What differs")."""
import math

import pytest
import torch

import model
import trainer


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
