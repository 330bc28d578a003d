"""
Simple training loop (minGPT), boilerplate that could apply to any neural network, so nothing in
this file really has anything to do with GPT specifically. On CUDA it runs the matrix products in
bfloat16 under autocast, uses the fused AdamW kernel, and reads the loss back from the GPU only
every `log_every` steps so that the host never waits for the device in between.
"""
import math

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
    # dataloader and logging
    num_workers = 0
    writer = None     # a TensorBoard SummaryWriter, or None
    log_every = 10    # steps between loss read-backs (progress bar and TensorBoard)
    device = "auto"   # "auto" picks CUDA when there is one

    def __init__(self, **kwargs):
        for k, v in kwargs.items():
            setattr(self, k, v)


def resolve_device(name):
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


class Trainer:

    def __init__(self, model, train_dataset, test_dataset, config):
        self.model = model
        self.train_dataset = train_dataset
        self.test_dataset = test_dataset
        self.config = config
        self.device = resolve_device(config.device)
        self.model.to(self.device)
        self.tokens = 0  # target positions seen so far, which drive the learning-rate schedule

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
        return torch.optim.AdamW(groups, lr=config.learning_rate, betas=config.betas,
                                 fused=self.device.startswith("cuda"))

    def loader(self, dataset, shuffle):
        config = self.config
        cuda = self.device.startswith("cuda")
        return DataLoader(dataset, shuffle=shuffle, batch_size=config.batch_size,
                          num_workers=config.num_workers, pin_memory=cuda,
                          persistent_workers=config.num_workers > 0)

    def autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.startswith("cuda"))

    def train(self):
        model, config = self.model, self.config
        if self.device.startswith("cuda"):
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        optimizer = self.configure_optimizer()
        loader = self.loader(self.train_dataset, shuffle=True)
        step = 0
        lr = config.learning_rate
        pbar = tqdm(total=config.max_epochs * len(loader), dynamic_ncols=True)
        for epoch in range(config.max_epochs):
            model.train()
            for x, y in loader:
                x = x.to(self.device, non_blocking=True)
                y = y.to(self.device, non_blocking=True)
                with self.autocast():
                    _, loss = model(x, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_norm_clip)
                optimizer.step()

                # as in the original, the new rate applies from the next step on
                self.tokens += y.numel()
                lr = self.learning_rate()
                for param_group in optimizer.param_groups:
                    param_group["lr"] = lr

                if step % config.log_every == 0:
                    loss_value = loss.item()
                    pbar.set_description(f"epoch {epoch + 1} iter {step}: train loss {loss_value:.5f}. lr {lr:e}")
                    if config.writer is not None:
                        config.writer.add_scalar("train/loss", loss_value, step)
                        config.writer.add_scalar("train/lr", lr, step)
                step += 1
                pbar.update()
            if self.test_dataset is not None:
                test_loss = self.test_loss()
                pbar.write(f"epoch {epoch + 1}: test loss {test_loss:.5f}")
                if config.writer is not None:
                    config.writer.add_scalar("test/loss", test_loss, step)
        pbar.close()

    @torch.no_grad()
    def test_loss(self):
        self.model.eval()
        losses = []
        for x, y in self.loader(self.test_dataset, shuffle=False):
            with self.autocast():
                _, loss = self.model(x.to(self.device), y.to(self.device))
            losses.append(loss)
        return torch.stack(losses).mean().item()
