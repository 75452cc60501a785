"""Plain supervised training and evaluation, shared by final training, QAT and the proxies.

Deterministic given the seed: the batch order is a permutation drawn from a seeded generator (the
same on every rank), the samples are read through a ``torch.utils.data.DataLoader`` over a
``SplitDataset`` whose sampler yields whole index batches (so an in-memory split gives exactly
the tensors of ``x[j]``, and a lazily decoded image folder is read by worker processes), and the
loader draws its worker seeds from a private generator, never from the global one the training
uses. Checkpointable per epoch so that ``--resume`` continues where a kill left it.

Every loop runs on ``compute.device`` (docs/distributed.md); ``fit`` moves the model back to the
CPU when it is done, so export and quantization see CPU tensors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from . import batchnorm_sync, fsio
from .compute import CPU, Compute


class SplitDataset(Dataset):
    """One split ``(images, labels)`` as a Dataset fetched a batch at a time: ``images`` is a
    float32 NCHW array or a lazy ``data.ImageFiles`` (decoded on indexing)."""

    def __init__(self, x, y: np.ndarray):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, j: np.ndarray):
        return torch.from_numpy(np.asarray(self.x[j])), torch.from_numpy(self.y[j])


class SeededBatches(Sampler):
    """Index batches of one pass: a permutation drawn from ``rng`` when the pass starts (in
    order when ``rng`` is None), cut into ``batch``-sized pieces; rank ``r`` of ``world`` takes
    every ``world``-th index of each piece (docs/distributed.md)."""

    def __init__(self, n: int, batch: int, rng: np.random.Generator | None, rank: int = 0, world: int = 1):
        self.n, self.batch, self.rng, self.rank, self.world = n, batch, rng, rank, world

    def __len__(self) -> int:
        return -(-self.n // self.batch)

    def __iter__(self):
        idx = self.rng.permutation(self.n) if self.rng is not None else np.arange(self.n)
        for i in range(0, self.n, self.batch):
            yield idx[i : i + self.batch][self.rank :: self.world]


def batches(x, y: np.ndarray, batch: int, rng: np.random.Generator | None, compute: Compute = CPU,
            shard: bool = False) -> DataLoader:
    """A DataLoader over one split (this rank's shard of each batch with ``shard``). Lazily
    decoded images get ``compute.data_workers`` worker processes; arrays need none."""
    lazy = not isinstance(x, np.ndarray)
    workers = compute.data_workers if lazy else 0
    sampler = SeededBatches(len(y), batch, rng, *((compute.rank, compute.world) if shard else (0, 1)))
    return DataLoader(SplitDataset(x, y), sampler=sampler, batch_size=None, num_workers=workers,
                      generator=torch.Generator(), pin_memory=compute.kind == "cuda")


def to_device(xb: torch.Tensor, yb: torch.Tensor, compute: Compute):
    if compute.kind == "cpu":
        return xb, yb
    return xb.to(compute.device, non_blocking=True), yb.to(compute.device, non_blocking=True)


@torch.no_grad()
def evaluate(model: nn.Module, x, y: np.ndarray, batch: int = 256, compute: Compute = CPU) -> float:
    """Top-1 accuracy in [0, 1], on the model's device. Under several ranks each scores its
    shard and the counts are summed, so call it on every rank of a job, or with the default
    (single-process) ``compute``."""
    model.eval()
    correct, n = 0, 0
    for xb, yb in batches(x, y, batch, None, compute, shard=True):
        xb, yb = to_device(xb, yb, compute)
        correct, n = correct + int((model(xb).argmax(1) == yb).sum()), n + len(yb)
    correct, n = compute.all_sum([correct, n])
    return correct / max(1, n)


def save_checkpoint(path: Path, state: dict, compute: Compute = CPU) -> None:
    """Rank 0 alone writes (the other ranks hold the same state)."""
    if compute.is_main:
        with fsio.atomic_path(path) as tmp:
            torch.save(state, tmp)


def load_checkpoint(path: Path, compute: Compute = CPU) -> dict | None:
    """Rank 0 reads the checkpoint and every rank gets it, so resuming works with any number of
    processes (and on machines that do not share the run directory)."""
    state = torch.load(path, weights_only=False, map_location="cpu") if compute.is_main and path.exists() else None
    return compute.broadcast(state)


def shard_loss(loss_fn, model: Callable[[torch.Tensor], torch.Tensor], xb: torch.Tensor, yb: torch.Tensor, compute: Compute) -> torch.Tensor | None:
    """This rank's loss on its shard. In one process an empty batch has none. Under several
    ranks every rank runs the forward pass, an empty shard too (a zero loss over the same
    graph), because the synced BatchNorm's collectives must pair up (``batchnorm_sync``)."""
    if len(yb):
        return loss_fn(model(xb), yb)
    return model(xb).sum() * 0.0 if compute.distributed else None


def step(params: list, loss: torch.Tensor | None, n_local: int, compute: Compute) -> int:
    """Backward (skipped for an empty shard in one process) and the gradient all-reduce; the
    whole batch's size."""
    if loss is not None:
        loss.backward()
    return compute.reduce_gradients(params, n_local)


def fit(model: nn.Module, train: tuple, epochs: int, lr: float, seed: int, batch: int = 64,
        checkpoint: Path | None = None, on_epoch: Callable[[int, float], None] | None = None,
        compute: Compute = CPU) -> nn.Module:
    """Adam + cosine schedule + label smoothing; resumes from ``checkpoint`` when it exists.
    Data-parallel over ``compute``'s ranks; the trained model is returned on the CPU."""
    return compute.run(_fit, model, train, epochs, lr, seed, batch, checkpoint, local={"on_epoch": on_epoch})


def _fit(model, train, epochs, lr, seed, batch, checkpoint, compute: Compute, on_epoch=None) -> nn.Module:
    model.to(compute.device)
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=lr, weight_decay=1e-5)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, epochs))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    start = 0
    state = load_checkpoint(checkpoint, compute) if checkpoint else None
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        start = state["epoch"]
    for epoch in range(start, epochs):
        rng = np.random.default_rng(seed * 1000 + epoch)
        torch.manual_seed(seed * 1000 + epoch)
        model.train()
        total, n = 0.0, 0
        with batchnorm_sync.synced(model, compute.distributed):
            for xb, yb in batches(*train, batch, rng, compute, shard=True):
                xb, yb = to_device(xb, yb, compute)
                opt.zero_grad()
                loss = shard_loss(loss_fn, model, xb, yb, compute)
                step(params, loss, len(yb), compute)
                nn.utils.clip_grad_norm_(params, 5.0)
                opt.step()
                total, n = total + (loss.item() * len(xb) if len(yb) else 0.0), n + len(xb)
        sched.step()
        compute.average_buffers(model)
        total, n = compute.all_sum([total, n])
        if checkpoint:
            save_checkpoint(checkpoint, {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "epoch": epoch + 1}, compute)
        if on_epoch:
            on_epoch(epoch + 1, total / max(1, n))
    return model.to("cpu")
