"""
Simple training loop (minGPT), boilerplate that could apply to any neural network, so nothing in
this file really has anything to do with GPT specifically.

Speed without changing the recipe: the loss is read back from the GPU only every `log_every`
steps, so the host never waits for the device in between; AdamW runs as one fused kernel on CUDA;
the data loader's workers serve all epochs as one stream, so they never stop and restart at an
epoch boundary; and with `compile` the forward and backward passes run as compiled kernels,
replayed as CUDA graphs on one GPU. Everything is computed in float32 unless `precision` says
otherwise, as in the original.

A batch may be cut into slices, for less memory (`micro_batch_size`) or for several processes
(torchrun: each takes a 1/N share of every batch): each slice's loss is weighted by its share of
the batch's target positions, so the gradient is the whole batch's, as in one pass.
"""
import contextlib
import math
import os
import random
import signal
import threading
import time

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

import utils


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
    shuffle = False          # as in the original: every epoch visits the examples in the same order
    writer = None            # a TensorBoard SummaryWriter, or None
    log_every = 10           # steps between loss read-backs (progress bar and TensorBoard)
    device = "auto"          # "auto" picks CUDA, then MPS, then the CPU
    compile = False          # torch.compile the forward and backward passes
    precision = "fp32"       # a key of PRECISIONS
    micro_batch_size = None  # examples per forward and backward pass (None: the whole batch at once)
    # resumable checkpoints: written every checkpoint_every epochs (0: never) and on Ctrl-C
    checkpoint_path = None   # None: no checkpoints at all
    checkpoint_every = 10
    checkpoint_tag = None    # names the run; a checkpoint resumes only the run it names

    def __init__(self, **kwargs):
        for k, v in kwargs.items():
            setattr(self, k, v)


# What each precision computes in. The float32 ones differ only in CUDA's matrix products: TF32
# rounds their factors to 10-bit mantissas and sums in float32.
PRECISIONS = {
    "fp32": "float32 throughout, as in the original",
    "tf32": "float32, with TF32 matrix products on CUDA",
    "bf16": "bfloat16 matrix products (autocast), attention scores and softmax in float32",
}


def set_precision(precision):
    """
    Set the process-wide switches of a key of PRECISIONS (bf16's autocast is the Trainer's). Call
    it before torch's first parallel operation: its CPU threads take the denormal switch from the
    thread that starts them.
    """
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    # Trained attention puts weights below float32's smallest normal number (1.2e-38) on far-off
    # keys, and a CPU computes on such denormals many times slower: count them as zero instead
    # (README.md, "Speed"; a CPU switch, CUDA's arithmetic is unchanged).
    torch.set_flush_denormal(True)


def init_distributed(device):
    """
    Under torchrun with several processes, join its process group (NCCL on CUDA, where "cuda" is
    then this process's own GPU; gloo elsewhere). Returns this process's rank and the world size.
    """
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    if world_size == 1:
        return 0, 1
    if device == "cuda":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    return dist.get_rank(), world_size


def device_available(name):
    """Whether torch can run on the device "cpu", "cuda" or "mps" (an Apple GPU) here."""
    return {"cpu": lambda: True, "cuda": torch.cuda.is_available,
            "mps": torch.backends.mps.is_available}[name]()


def resolve_device(name):
    """ "auto" is the first device available of CUDA, MPS and the CPU; other names stay as they are."""
    if name == "auto":
        return next(d for d in ("cuda", "mps", "cpu") if device_available(d))
    return name


class TrainingStopped(Exception):
    """Training ended early (interrupted, or the loss diverged); the message says what was kept."""


class CheckpointError(Exception):
    """A checkpoint to resume from cannot be used: it is unreadable, not a checkpoint, or of another run."""


class EpochBatches:
    """
    The batches of `epochs` passes over a dataset, as one stream of index lists starting at batch
    `start_step`, cut the way a DataLoader cuts them. Without a seed every epoch goes in the
    dataset's order, as the original's DataLoader did; with one, epoch e is the permutation drawn
    from seed + e. Either way a resumed run sees the very batches it would have seen.
    """

    def __init__(self, dataset_size, batch_size, epochs, seed=None, start_step=0):
        self.dataset_size, self.batch_size = dataset_size, batch_size
        self.seed, self.start_step = seed, start_step
        self.per_epoch = math.ceil(dataset_size / batch_size)
        self.total_steps = epochs * self.per_epoch

    def __len__(self):
        return self.total_steps - self.start_step

    def __iter__(self):
        for step in range(self.start_step, self.total_steps):
            epoch, index = divmod(step, self.per_epoch)
            if self.seed is None:
                order = list(range(self.dataset_size))
            elif index == 0 or step == self.start_step:
                order = torch.randperm(self.dataset_size,
                                       generator=torch.Generator().manual_seed(self.seed + epoch)).tolist()
            yield order[index * self.batch_size:(index + 1) * self.batch_size]


def rng_state():
    """The random generators' states, as tensors and plain types, which torch.load(weights_only=True) reads."""
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": (name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gaussian)}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    random.setstate(state["python"])
    name, keys, position, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def ctrl_c_ends_the_step():
    """
    Yields a list that the first Ctrl-C appends to, so that the training loop can stop after the
    step in progress, never inside one; a second Ctrl-C interrupts at once. Only the main thread
    receives signals: elsewhere the list stays empty.
    """
    interrupted = []

    def on_interrupt(signum, frame):
        if interrupted:
            raise KeyboardInterrupt
        interrupted.append(signum)

    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return
    previous_handler = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous_handler)


class Trainer:

    def __init__(self, model, train_dataset, test_dataset, config):
        self.model = model
        self.train_dataset = train_dataset
        self.test_dataset = test_dataset
        self.config = config
        self.device = resolve_device(config.device)
        self.cuda = self.device.startswith("cuda")
        self.model.to(self.device)
        if config.precision not in PRECISIONS:
            raise ValueError(f"precision {config.precision!r}: not one of {', '.join(PRECISIONS)}")
        self.rank, self.world_size = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        # training calls training_module; self.model stays the plain module whose state_dict is saved
        self.ddp = DistributedDataParallel(model) if self.world_size > 1 else None
        self.training_module = self.ddp or model
        # CUDA graphs replay a whole pass as one launch; DDP's hooks cannot run inside one
        self.cuda_graphs = config.compile and self.cuda and self.ddp is None
        if config.compile:
            self.training_module = torch.compile(self.training_module, dynamic=False,
                                                 mode="reduce-overhead" if self.cuda_graphs else None)
        self.tokens = 0  # target positions seen so far, which drive the learning-rate schedule
        self.data_wait = 0.0  # seconds spent waiting for the data loader
        self.shuffle_seed = int(torch.randint(2 ** 31, ())) if config.shuffle else None

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

    def step(self, x, y, optimizer):
        """One optimization step on a batch; returns this process's share of its loss, still on the device."""
        optimizer.zero_grad(set_to_none=True)
        loss = 0.0
        slices = self.slices(x, y)
        for i, (xs, ys, weight) in enumerate(slices):
            xs = xs.to(self.device, non_blocking=True)
            ys = ys.to(self.device, non_blocking=True)
            last = i == len(slices) - 1
            # DDP averages the gradients over the processes when the last slice's are ready
            with (self.ddp.no_sync() if self.ddp and not last else contextlib.nullcontext()), \
                    torch.autocast(self.device.split(":")[0], torch.bfloat16, enabled=self.config.precision == "bf16"):
                if self.cuda_graphs:
                    torch.compiler.cudagraph_mark_step_begin()
                _, slice_loss = self.training_module(xs, ys)
            (slice_loss * (weight * self.world_size)).backward()
            loss = loss + slice_loss.detach() * weight
        self.grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_norm_clip)
        optimizer.step()
        # as in the original, the new rate applies from the next step on
        self.tokens += y.numel()
        for param_group in optimizer.param_groups:
            param_group["lr"] = self.learning_rate()
        return loss

    def slices(self, x, y):
        """
        This process's share of the batch (x, y), in slices of at most micro_batch_size examples,
        each with its weight: its share of the batch's target positions (the model's loss is the
        mean over the targets it does not ignore), so that the weighted losses add up to the batch's.
        """
        counted = y != self.model.ignore_index
        total = max(int(counted.sum()), 1)
        size = self.config.micro_batch_size or len(y)
        share = slice(*(len(y) * r // self.world_size for r in (self.rank, self.rank + 1)))
        return [(xs, ys, int(cs.sum()) / total)
                for xs, ys, cs in zip(x[share].split(size), y[share].split(size), counted[share].split(size))]

    def save_checkpoint(self, optimizer, step):
        """Everything needed to go on after `step` steps exactly as if never stopped."""
        if not all(p.isfinite().all() for p in self.model.parameters()):
            raise self.diverged(f"the weights became NaN or infinite by step {step}")
        if self.rank > 0:
            return  # the processes hold the same weights: the first one saves them
        state = {"model": self.model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                 "tokens": self.tokens, "shuffle_seed": self.shuffle_seed, "rng": rng_state(),
                 "run": self.config.checkpoint_tag}
        utils.write_atomically(self.config.checkpoint_path, lambda f: torch.save(state, f), mode="wb")

    def load_checkpoint(self, optimizer):
        """Restore a checkpoint's model and optimizer; returns it for the caller to finish."""
        path = self.config.checkpoint_path
        try:
            # weights_only: tensors and plain types only, so a crafted file cannot run code
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception:  # whatever torch.load raises on a file it cannot read as tensors and plain values
            raise CheckpointError(f"{path}: cannot be read as a checkpoint (truncated, or not written by "
                                  f"this trainer)") from None
        keys = {"model", "optimizer", "step", "tokens", "shuffle_seed", "rng", "run"}
        if not isinstance(state, dict) or not keys <= state.keys():
            raise CheckpointError(f"{path}: not a checkpoint (it holds no training state; a params file?)")
        if state["run"] != self.config.checkpoint_tag:
            raise CheckpointError(f"{path}: this checkpoint is of another run "
                                  f"({state['run']}), not of {self.config.checkpoint_tag}")
        self.model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        self.tokens, self.shuffle_seed = state["tokens"], state["shuffle_seed"]
        return state

    def train(self, resume=False):
        """Train for config.max_epochs; with resume, go on from config.checkpoint_path."""
        config = self.config
        optimizer = self.configure_optimizer()
        checkpoint = self.load_checkpoint(optimizer) if resume else None
        start_step = checkpoint["step"] if checkpoint else 0
        batches = EpochBatches(len(self.train_dataset), config.batch_size, config.max_epochs,
                               self.shuffle_seed, start_step)
        smallest_batch = min(config.batch_size, len(self.train_dataset) % config.batch_size or config.batch_size)
        if smallest_batch < self.world_size:
            raise ValueError(f"a batch of {smallest_batch} examples cannot be shared by {self.world_size} processes")
        loader = DataLoader(self.train_dataset, batch_sampler=batches, num_workers=config.num_workers,
                            pin_memory=self.cuda)
        data_iter = iter(loader)  # this draws a random number: do it before restoring the generators
        if checkpoint:
            set_rng_state(checkpoint["rng"])
        if self.world_size > 1:
            # every process makes the same batches (Python's generator, seeded alike, makes the
            # examples) but needs dropout masks of its own (torch's generator)
            torch.manual_seed(int(torch.randint(2 ** 62, ())) + self.rank)
        self.model.train()
        start = time.perf_counter()
        with tqdm(initial=start_step, total=batches.total_steps, dynamic_ncols=True, disable=self.rank > 0) as pbar, \
                ctrl_c_ends_the_step() as interrupted:
            for step in range(start_step, batches.total_steps):
                loss = self.step(*self.next_batch(data_iter), optimizer)
                epoch, end_of_epoch = step // batches.per_epoch + 1, (step + 1) % batches.per_epoch == 0
                stop = False
                # one process stops at once on Ctrl-C; several agree on it at the next read-back
                if step % config.log_every == 0 or end_of_epoch or (interrupted and self.world_size == 1):
                    loss_value, stop = self.read_back(loss, interrupted)
                    self.log(pbar, step, epoch, loss_value)  # before a checkpoint: never save a NaN
                pbar.update()
                if end_of_epoch and self.test_dataset is not None:
                    self.log_test_loss(pbar, step, epoch)
                if step + 1 < batches.total_steps:
                    self.checkpoint_or_stop(optimizer, step + 1, batches.total_steps, epoch, end_of_epoch, stop)
        elapsed = time.perf_counter() - start
        if self.rank == 0:
            print(f"trained {len(batches)} steps in {elapsed:.1f} s "
                  f"({self.data_wait / max(elapsed, 1e-9):.1%} of it waiting for data)")

    def read_back(self, loss, interrupted):
        """The batch's loss and whether to stop, the same in every process."""
        if self.world_size == 1:
            return loss.item(), bool(interrupted)
        both = torch.stack([loss, torch.tensor(float(bool(interrupted)), device=loss.device)])
        dist.all_reduce(both)  # the processes' shares of the loss add up to the batch's
        return both[0].item(), both[1].item() > 0

    def next_batch(self, data_iter):
        wait_start = time.perf_counter()
        batch = next(data_iter)
        self.data_wait += time.perf_counter() - wait_start
        return batch

    def checkpoint_or_stop(self, optimizer, done, total, epoch, end_of_epoch, stop):
        """Between two steps: save a checkpoint when one is due or Ctrl-C was pressed; stop on Ctrl-C."""
        config = self.config
        periodic = config.checkpoint_every and end_of_epoch and epoch % config.checkpoint_every == 0
        if config.checkpoint_path and (stop or periodic):
            self.save_checkpoint(optimizer, done)
        if stop:
            raise TrainingStopped(f"interrupted after step {done} of {total}; "
                                  + (f"go on with --resume (checkpoint {config.checkpoint_path})"
                                     if config.checkpoint_path else "nothing was saved"))

    def diverged(self, what):
        path = self.config.checkpoint_path
        kept = f"the last checkpoint, {path}, is from before it" if path and os.path.exists(path) else "nothing was saved"
        return TrainingStopped(f"{what}; {kept}; a lower learning rate may help")

    def log(self, pbar, step, epoch, loss_value):
        if not math.isfinite(loss_value):
            raise self.diverged(f"the loss became {loss_value} at step {step} (epoch {epoch})")
        lr = self.learning_rate()
        pbar.set_description(f"epoch {epoch} iter {step}: train loss {loss_value:.5f}. lr {lr:e}")
        if self.config.writer is not None:
            self.config.writer.add_scalar("train/loss", loss_value, step)
            self.config.writer.add_scalar("train/lr", lr, step)
            # before clipping to grad_norm_clip: how far the step would have gone
            self.config.writer.add_scalar("train/grad_norm", self.grad_norm.item(), step)

    def log_test_loss(self, pbar, step, epoch):
        test_loss = self.test_loss()
        pbar.write(f"epoch {epoch}: test loss {test_loss:.5f}")
        if self.config.writer is not None:
            self.config.writer.add_scalar("test/loss", test_loss, step)
        self.model.train()

    @torch.no_grad()
    def test_loss(self):
        self.model.eval()
        losses = []
        for x, y in DataLoader(self.test_dataset, batch_size=self.config.batch_size):
            _, loss = self.model(x.to(self.device), y.to(self.device))
            losses.append(loss)
        return torch.stack(losses).mean().item()
