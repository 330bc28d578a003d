"""
Simple training loop (minGPT), boilerplate that could apply to any neural network, so nothing in
this file really has anything to do with GPT specifically.

Speed without changing the recipe: on CUDA the matrix products run in bfloat16 under autocast
with the fused AdamW kernel; the loss is read back from the GPU only every `log_every` steps, so
the host never waits for the device in between; and the data loader's workers serve all epochs
as one stream, so they never stop and restart at an epoch boundary.
"""
import math
import time

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm


class TrainerConfig:
    # optimization parameters
    max_epochs = 10
    batch_size = 64
    learning_rate = 3e-4
    betas = (0.9, 0.95)
    grad_norm_clip = 1.0
    weight_decay = 0.1  # on every parameter whose name does not say "bias", as in the original
    # learning rate decay params: linear warmup followed by cosine decay to 10% of original
    lr_decay = False
    warmup_tokens = 375e6
    final_tokens = 260e9
    # dataloader, logging and speed
    num_workers = 0
    writer = None            # a TensorBoard SummaryWriter, or None
    log_every = 10           # steps between loss read-backs (progress bar and TensorBoard)
    device = "auto"          # "auto" picks CUDA when there is one
    mixed_precision = True   # bfloat16 autocast on CUDA (the CPU always computes in float32)
    compile = False          # torch.compile the model

    def __init__(self, **kwargs):
        for k, v in kwargs.items():
            setattr(self, k, v)


def resolve_device(name):
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


class EpochBatches:
    """The batches of max_epochs shuffled passes over a dataset, as one stream of index lists.
    Each epoch is a fresh permutation, cut into batches the way a shuffling DataLoader cuts it."""

    def __init__(self, dataset_size, batch_size, epochs):
        self.dataset_size, self.batch_size, self.epochs = dataset_size, batch_size, epochs

    def batches_per_epoch(self):
        return math.ceil(self.dataset_size / self.batch_size)

    def __len__(self):
        return self.epochs * self.batches_per_epoch()

    def __iter__(self):
        for _ in range(self.epochs):
            order = torch.randperm(self.dataset_size).tolist()
            for start in range(0, self.dataset_size, self.batch_size):
                yield order[start:start + self.batch_size]


class Trainer:

    def __init__(self, model, train_dataset, test_dataset, config):
        self.model = model
        self.train_dataset = train_dataset
        self.test_dataset = test_dataset
        self.config = config
        self.device = resolve_device(config.device)
        self.cuda = self.device.startswith("cuda")
        self.model.to(self.device)
        # compiling wraps the model; self.model stays the plain module whose state_dict is saved
        self.forward = torch.compile(model) if config.compile else model
        self.tokens = 0  # target positions seen so far, which drive the learning-rate schedule
        self.data_wait = 0.0  # seconds spent waiting for the data loader

    def learning_rate(self):
        """The original schedule, evaluated at self.tokens."""
        config = self.config
        if not config.lr_decay:
            return config.learning_rate
        if self.tokens < config.warmup_tokens:
            lr_mult = self.tokens / max(1, config.warmup_tokens)
        else:
            progress = (self.tokens - config.warmup_tokens) / max(1, config.final_tokens - config.warmup_tokens)
            # as in the original, the cosine is not stopped at final_tokens: past it the
            # multiplier climbs back from its 0.1 floor (pretraining's 650 epochs reach progress 3.2)
            lr_mult = max(0.1, 0.5 * (1.0 + math.cos(math.pi * progress)))
        return config.learning_rate * lr_mult

    def configure_optimizer(self):
        config = self.config
        params = dict(self.model.named_parameters())
        decay = [p for n, p in params.items() if "bias" not in n]
        no_decay = [p for n, p in params.items() if "bias" in n]
        groups = [{"params": decay, "weight_decay": config.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=config.learning_rate, betas=config.betas, fused=self.cuda)

    def autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda and self.config.mixed_precision)

    def step(self, x, y, optimizer):
        """One optimization step on a batch; returns the loss, still on the device."""
        x = x.to(self.device, non_blocking=True)
        y = y.to(self.device, non_blocking=True)
        with self.autocast():
            _, loss = self.forward(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_norm_clip)
        optimizer.step()
        # as in the original, the new rate applies from the next step on
        self.tokens += y.numel()
        for param_group in optimizer.param_groups:
            param_group["lr"] = self.learning_rate()
        return loss

    def train(self):
        model, config = self.model, self.config
        if self.cuda:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        optimizer = self.configure_optimizer()
        batches = EpochBatches(len(self.train_dataset), config.batch_size, config.max_epochs)
        loader = DataLoader(self.train_dataset, batch_sampler=batches, num_workers=config.num_workers,
                            pin_memory=self.cuda)
        model.train()
        pbar = tqdm(total=len(batches), dynamic_ncols=True)
        start = time.perf_counter()
        data_iter = iter(loader)
        for step in range(len(batches)):
            wait_start = time.perf_counter()
            x, y = next(data_iter)
            self.data_wait += time.perf_counter() - wait_start
            loss = self.step(x, y, optimizer)
            epoch = step // batches.batches_per_epoch() + 1
            if step % config.log_every == 0:
                loss_value, lr = loss.item(), self.learning_rate()
                pbar.set_description(f"epoch {epoch} iter {step}: train loss {loss_value:.5f}. lr {lr:e}")
                if config.writer is not None:
                    config.writer.add_scalar("train/loss", loss_value, step)
                    config.writer.add_scalar("train/lr", lr, step)
            pbar.update()
            if self.test_dataset is not None and (step + 1) % batches.batches_per_epoch() == 0:
                test_loss = self.test_loss()
                pbar.write(f"epoch {epoch}: test loss {test_loss:.5f}")
                if config.writer is not None:
                    config.writer.add_scalar("test/loss", test_loss, step)
                model.train()
        pbar.close()
        elapsed = time.perf_counter() - start
        print(f"trained {len(batches)} steps in {elapsed:.1f} s "
              f"({self.data_wait / max(elapsed, 1e-9):.1%} of it waiting for data)")

    @torch.no_grad()
    def test_loss(self):
        self.model.eval()
        losses = []
        for x, y in DataLoader(self.test_dataset, batch_size=self.config.batch_size):
            with self.autocast():
                _, loss = self.model(x.to(self.device), y.to(self.device))
            losses.append(loss)
        return torch.stack(losses).mean().item()
