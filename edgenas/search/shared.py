"""One supernet trained once, then specialised per target: the search of a multi-target build.

Once-for-all (Cai et al., ICLR 2020) amortises NAS over many devices by training the weights of
one supernet a single time and searching each device's architecture over those shared weights;
only the cheap architecture step is repeated per device (docs/methods.md §8). Here:

* ``train_supernet``: the weight phase, target-independent. Each step alternates between the
  uniform mixture of every candidate (what the per-target alpha steps read, as in DARTS's
  warm-up) and one uniformly sampled single path (Single Path One-Shot, Guo et al., ECCV 2020),
  so that a single path's inherited weights are already a trained network: the fronts score
  candidates with them, and the final training starts from them.
* ``search_alphas``: the architecture phase for one target's latency table and budget: the
  shared weights frozen, only the alphas stepped (the same ``ArchObjective`` as DARTS), for the
  epochs a DARTS search would have spent on alphas. A round costs a fraction of a DARTS round.
* ``path_accuracy`` / ``inherit``: a candidate's accuracy with the supernet's weights (BatchNorm
  statistics re-estimated for that path, as SPOS and OFA do) and those weights copied into the
  plain network ``freeze(arch)`` builds.

Training runs on ``compute``'s device, in one process (``compute.alone()``): a multi-target
build refuses several ranks (docs/distributed.md).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..compute import CPU, Compute
from ..data import DataSplits
from ..latency.table import LatencyTable
from ..space.arch import Arch, SpaceConfig
from ..space.supernet import Supernet
from ..train import batches, evaluate, load_checkpoint, save_checkpoint, to_device
from .budget_fit import fit_arch
from .collapse import parameter_free_share
from .darts import ArchObjective, SearchConfig, SearchResult, build_supernet
from .select import supernet_score

BN_BATCHES = 4   # batches that re-estimate a path's BatchNorm statistics before it is scored


def _random_path(net: Supernet, rng: np.random.Generator, device: str) -> list[torch.Tensor]:
    return [nn.functional.one_hot(torch.tensor(int(rng.integers(len(c.candidates)))), len(c.candidates)).float().to(device)
            for c in net.cells]


def path_weights(net: Supernet, arch: Arch) -> list[torch.Tensor]:
    """The one-hot mixture weights that make the supernet compute ``arch`` (a path of its space)."""
    out = []
    for cell, layer in zip(net.cells, arch.layers, strict=True):
        idx = cell.candidates.index((layer.op, layer.w_bits))
        out.append(nn.functional.one_hot(torch.tensor(idx), len(cell.candidates)).float())
    return out


def train_supernet(space: SpaceConfig, data: DataSplits, cfg: SearchConfig, seed: int, checkpoint: Path,
                   on_epoch: Callable[[int, dict], None] | None = None, compute: Compute = CPU) -> Supernet:
    """Train the supernet's weights for ``cfg.epochs`` (alphas untouched, at uniform) on the weight
    split, checkpointed every epoch in ``checkpoint`` (resumed from it when it exists)."""
    data, compute = data.subsample(cfg.subsample), compute.alone()
    torch.manual_seed(seed)
    net = build_supernet(space, cfg).to(compute.device)
    opt = torch.optim.Adam(net.weight_parameters(), lr=cfg.w_lr, weight_decay=3e-5)
    start, history = 0, []
    state = load_checkpoint(checkpoint)
    if state is not None:
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        start, history = state["epoch"], state["history"]
    ce = nn.CrossEntropyLoss()
    params = net.weight_parameters()
    for epoch in range(start, cfg.epochs):
        rng = np.random.default_rng(seed * 7919 + epoch)
        torch.manual_seed(seed * 7919 + epoch)
        net.train()
        total, steps = 0.0, 0
        for step, (xb, yb) in enumerate(batches(*data.weights, cfg.batch, rng, compute)):
            xb, yb = to_device(xb, yb, compute)
            opt.zero_grad()
            loss = ce(net(xb, None if step % 2 == 0 else _random_path(net, rng, compute.device)), yb)
            loss.backward()
            nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            total, steps = total + loss.item(), steps + 1
        rec = {"epoch": epoch + 1, "w_loss": total / max(1, steps), "val_acc": evaluate(net, *data.val, compute=compute)}
        history.append(rec)
        save_checkpoint(checkpoint, {"net": net.state_dict(), "opt": opt.state_dict(), "epoch": epoch + 1,
                                     "history": history})
        if on_epoch:
            on_epoch(epoch + 1, rec)
    return net.cpu().eval()


def load_supernet(space: SpaceConfig, cfg: SearchConfig, checkpoint: Path) -> Supernet:
    """The trained supernet of ``train_supernet``'s finished ``checkpoint`` (on the CPU)."""
    net = build_supernet(space, cfg)
    net.load_state_dict(load_checkpoint(checkpoint)["net"])
    return net.eval()


def search_alphas(space: SpaceConfig, data: DataSplits, table: LatencyTable, budget_ms: float, cfg: SearchConfig,
                  seed: int, supernet: Path, checkpoint: Path | None = None,
                  on_epoch: Callable[[int, dict], None] | None = None, compute: Compute = CPU) -> SearchResult:
    """The architecture step alone over the frozen shared weights of ``supernet`` (a finished
    ``train_supernet`` checkpoint): ``cfg.epochs - cfg.warmup`` epochs of alpha steps on the alpha
    split against ``table`` and ``budget_ms``. The per-epoch history has DARTS's keys, so the
    collapse check and the report read it alike."""
    data, compute = data.subsample(cfg.subsample), compute.alone()
    torch.manual_seed(seed)
    net = load_supernet(space, cfg, supernet).to(compute.device)
    for p in net.weight_parameters():
        p.requires_grad_(False)
    objective = ArchObjective(net, table, budget_ms, cfg, compute.device)
    opt = torch.optim.Adam(net.arch_parameters(), lr=cfg.a_lr, betas=(0.5, 0.999))
    start, history = 0, []
    state = load_checkpoint(checkpoint) if checkpoint else None
    if state is not None:
        net.alphas.load_state_dict(state["alphas"])
        opt.load_state_dict(state["opt"])
        start, history = state["epoch"], state["history"]
    ce = nn.CrossEntropyLoss()
    epochs = max(1, cfg.epochs - cfg.warmup)
    # the objective's schedules (beta-decay ramp, entropy) run over DARTS's alpha epochs
    offset = cfg.epochs - epochs
    for epoch in range(start, epochs):
        rng = np.random.default_rng(seed * 7919 + epoch)
        net.train()  # batch statistics, as DARTS's alpha step; the shared weights are never saved back
        total, steps = 0.0, 0
        for xa, ya in batches(*data.alphas, cfg.batch, rng, compute):
            xa, ya = to_device(xa, ya, compute)
            opt.zero_grad()
            loss = objective(ce(net(xa), ya), [torch.softmax(a, 0) for a in net.alphas], epoch + offset, list(net.alphas))
            loss.backward()
            opt.step()
            total, steps = total + loss.item(), steps + 1
        derived = net.derive()
        rec = {"epoch": epoch + 1, "w_loss": None, "a_loss": total / max(1, steps),
               "val_acc": evaluate(net, *data.val, compute=compute),
               **objective.report(net.probabilities()), "skip_share_probs": net.parameter_free_share(),
               "skip_share_arch": parameter_free_share(derived),
               "probs": [p.tolist() for p in net.probabilities()], "arch": str(derived)}
        history.append(rec)
        if checkpoint:
            save_checkpoint(checkpoint, {"alphas": net.alphas.state_dict(), "opt": opt.state_dict(),
                                         "epoch": epoch + 1, "history": history})
        if on_epoch:
            on_epoch(epoch + 1, rec)
    probs = net.probabilities()
    arch, fitted = net.derive(), ()
    if cfg.fit_budget:
        arch, fitted = fit_arch(space, arch, [p.tolist() for p in probs], table, budget_ms)
    return SearchResult(arch=arch, alphas=tuple(tuple(float(v) for v in p) for p in probs), history=tuple(history),
                        budget_ms=budget_ms, expected_ms=objective.report(probs)["expected_ms"], fitted=fitted)


@torch.no_grad()
def path_accuracy(net: Supernet, arch: Arch, data: DataSplits, batch: int = 64) -> float:
    """Validation accuracy of ``arch`` with the supernet's inherited weights, after its BatchNorm
    statistics are re-estimated on ``BN_BATCHES`` weight-split batches for that path alone (the
    shared running statistics average every path and would misjudge each)."""
    net = copy.deepcopy(net)
    weights = path_weights(net, arch)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None   # cumulative average over the calibration batches
    net.train()
    for i, (xb, _) in enumerate(batches(*data.weights, batch, np.random.default_rng(0))):
        if i == BN_BATCHES:
            break
        net(xb, weights)
    return supernet_score(net, *data.val, weights)[0]


def inherit(model: nn.Module, net: Supernet, arch: Arch) -> nn.Module:
    """Copy the supernet's weights of ``arch``'s path into ``model`` (``freeze(arch)``): stem and
    head as they are, layer i from cell i's chosen op. Strict: every tensor must be found."""
    src = net.state_dict()
    state = {}
    for k in model.state_dict():
        head, _, rest = k.partition(".")
        if head == "layers":
            i, _, rest = rest.partition(".")
            state[k] = src[f"cells.{i}.ops.{arch.layers[int(i)].op}.{rest}"]
        else:
            state[k] = src[k]
    model.load_state_dict(state)
    return model
