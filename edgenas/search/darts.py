"""First-order DARTS with a hardware-aware objective (Liu et al. 2019; Cai et al., ProxylessNAS).

Weights and architecture weights live in separate optimizers and see disjoint data splits
(``DataSplits.weights`` / ``.alphas``): the alphas never enter the weight optimizer (DASS's code
lets its SGD update them, a quirk we avoid). Alphas are frozen during ``warmup`` epochs, then
each weight step is preceded by one alpha step on the alpha split. The state is checkpointed
after every epoch, so ``--resume`` continues mid-search with identical results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..data import DataSplits
from ..latency.table import LatencyTable
from ..records import record
from ..space.arch import Arch, SpaceConfig
from ..space.supernet import Supernet
from ..train import batches, evaluate, load_checkpoint, save_checkpoint
from .objective import expected_latency, latency_loss


@record("search_config")
@dataclass(frozen=True)
class SearchConfig:
    epochs: int = 10
    warmup: int = 3
    batch: int = 64
    w_lr: float = 3e-3
    a_lr: float = 3e-3
    latency_form: str = "add"
    latency_weight: float = 0.5


@record("search_result")
@dataclass(frozen=True)
class SearchResult:
    arch: Arch
    alphas: tuple[tuple[float, ...], ...]            # final softmax(alpha) per layer
    history: tuple[dict, ...] = field(default=())     # per epoch: losses, accuracy, expected latency, probs
    budget_ms: float = 0.0
    expected_ms: float = 0.0


def search(space: SpaceConfig, data: DataSplits, table: LatencyTable, budget_ms: float, cfg: SearchConfig,
           seed: int, checkpoint: Path | None = None,
           on_epoch: Callable[[int, dict], None] | None = None) -> SearchResult:
    torch.manual_seed(seed)
    net = Supernet(space)
    costs = [torch.tensor(c) for c in table.layer_costs(space)]
    w_opt = torch.optim.Adam(net.weight_parameters(), lr=cfg.w_lr, weight_decay=3e-5)
    a_opt = torch.optim.Adam(net.arch_parameters(), lr=cfg.a_lr, betas=(0.5, 0.999))
    start, history = 0, []
    state = load_checkpoint(checkpoint) if checkpoint else None
    if state is not None:
        net.load_state_dict(state["net"])
        w_opt.load_state_dict(state["w_opt"])
        a_opt.load_state_dict(state["a_opt"])
        start, history = state["epoch"], state["history"]
    ce = nn.CrossEntropyLoss()
    for epoch in range(start, cfg.epochs):
        rng = np.random.default_rng(seed * 7919 + epoch)
        torch.manual_seed(seed * 7919 + epoch)
        net.train()
        a_iter = batches(*data.alphas, cfg.batch, rng)
        stats = {"w_loss": 0.0, "a_loss": 0.0, "steps": 0}
        for xb, yb in batches(*data.weights, cfg.batch, rng):
            if epoch >= cfg.warmup:
                try:
                    xa, ya = next(a_iter)
                except StopIteration:
                    a_iter = batches(*data.alphas, cfg.batch, rng)
                    xa, ya = next(a_iter)
                a_opt.zero_grad()
                lat = expected_latency([torch.softmax(a, 0) for a in net.alphas], costs, table.fixed_ms)
                a_loss = latency_loss(ce(net(xa), ya), lat, budget_ms, cfg.latency_form, cfg.latency_weight)
                a_loss.backward()
                a_opt.step()
                stats["a_loss"] += float(a_loss)
            w_opt.zero_grad()
            w_loss = ce(net(xb), yb)
            w_loss.backward()
            nn.utils.clip_grad_norm_(net.weight_parameters(), 5.0)
            w_opt.step()
            stats["w_loss"] += float(w_loss)
            stats["steps"] += 1
        with torch.no_grad():
            lat = float(expected_latency(net.probabilities(), costs, table.fixed_ms))
        record_ = {
            "epoch": epoch + 1,
            "w_loss": stats["w_loss"] / max(1, stats["steps"]),
            "a_loss": stats["a_loss"] / max(1, stats["steps"]) if epoch >= cfg.warmup else None,
            "val_acc": evaluate(net, *data.val),
            "expected_ms": lat,
            "probs": [p.tolist() for p in net.probabilities()],
            "arch": str(net.derive()),
        }
        history.append(record_)
        if checkpoint:
            save_checkpoint(checkpoint, {"net": net.state_dict(), "w_opt": w_opt.state_dict(), "a_opt": a_opt.state_dict(),
                                         "epoch": epoch + 1, "history": history})
        if on_epoch:
            on_epoch(epoch + 1, record_)
    probs = net.probabilities()
    return SearchResult(
        arch=net.derive(),
        alphas=tuple(tuple(float(v) for v in p) for p in probs),
        history=tuple(history),
        budget_ms=budget_ms,
        expected_ms=float(expected_latency(probs, costs, table.fixed_ms)),
    )
