"""The optimizer and the learning-rate schedule (SPEC.md section 7)."""
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
