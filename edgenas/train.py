"""Plain supervised training and evaluation, shared by final training and QAT.

Deterministic given the seed (fixed data order from a seeded generator, single-threaded data
path), checkpointable per epoch so that ``--resume`` continues where a kill left it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from . import fsio


def batches(x: np.ndarray, y: np.ndarray, batch: int, rng: np.random.Generator | None):
    idx = rng.permutation(len(x)) if rng is not None else np.arange(len(x))
    for i in range(0, len(x), batch):
        j = idx[i : i + batch]
        yield torch.from_numpy(x[j]), torch.from_numpy(y[j])


@torch.no_grad()
def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray, batch: int = 256) -> float:
    """Top-1 accuracy in [0, 1]."""
    model.eval()
    correct = 0
    for xb, yb in batches(x, y, batch, None):
        correct += int((model(xb).argmax(1) == yb).sum())
    return correct / max(1, len(x))


def save_checkpoint(path: Path, state: dict) -> None:
    with fsio.atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict | None:
    return torch.load(path, weights_only=False) if path.exists() else None


def fit(
    model: nn.Module,
    train: tuple[np.ndarray, np.ndarray],
    epochs: int,
    lr: float,
    seed: int,
    batch: int = 64,
    checkpoint: Path | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> nn.Module:
    """Adam + cosine schedule + label smoothing; resumes from ``checkpoint`` when it exists."""
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-5)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, epochs))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    start = 0
    state = load_checkpoint(checkpoint) if checkpoint else None
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
        for xb, yb in batches(*train, batch, rng):
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            total, n = total + loss.item() * len(xb), n + len(xb)
        sched.step()
        if checkpoint:
            save_checkpoint(checkpoint, {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "epoch": epoch + 1})
        if on_epoch:
            on_epoch(epoch + 1, total / max(1, n))
    return model
