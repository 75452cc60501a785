"""First-order DARTS with a hardware-aware objective (Liu et al., ICLR 2019; Cai et al., ProxylessNAS).

Weights and architecture weights live in separate optimizers and see disjoint data splits
(``DataSplits.weights`` / ``.alphas``): the alphas never enter the weight optimizer (DASS's code
lets its SGD update them, a quirk we avoid). Alphas are frozen during ``warmup`` epochs, then
each weight step is preceded by one alpha step on the alpha split. The state is checkpointed
after every epoch, so ``--resume`` continues mid-search with identical results.

The methods plug in through ``SearchConfig`` fields (all off by default except the latency term,
the collapse remedy and the budget fit):
``noise`` (QuantNAS quantization noise or the direct fake-quant baseline, with ``SpaceConfig.bits``
as the per-layer choice), ``entropy_weight`` and ``bitops_weight`` (QuantNAS's alpha-step terms),
``sparsity_weight`` and ``sparse_stages`` (DASS, with ``SpaceConfig.sparse_levels``), and
``selection`` (argmax or DARTS-PT perturbation), then ``fit_budget`` (the selected architecture's
ops swapped, least probable per millisecond first, until the table sum meets the budget:
``budget_fit.py``). Every epoch records the collapse signal (the
share of parameter-free ops in softmax(alpha) and in the derived architecture).

Against the collapse to ``skip`` (``collapse.py``) the defaults are the hinge latency term (no
reward below the budget) and ``remedy``: ``beta`` (β-DARTS's Beta-Decay regularisation of the
alphas, Ye et al. CVPR 2022) or ``darts-`` (DARTS-'s auxiliary skip with a weight decaying
linearly from 1 to 0, Chu et al. ICLR 2021); docs/search.md has the measurement that chose the
default. ``subsample`` caps the weight split (and half of it for alphas / validation) so that a
search on a large set such as Fashion-MNIST fits minutes; the final training uses all of it.

The search runs on ``compute`` (a ``compute.Compute``): its device, and under several ranks
data-parallel, each rank on its shard of every weight and alpha batch with both gradients
all-reduced (docs/distributed.md).
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
from ..space import cost, sparse
from ..space.arch import Arch, SpaceConfig
from ..space.noise import QuantNoise
from ..space.supernet import Supernet
from ..compute import CPU, Compute
from .. import batchnorm_sync
from ..train import batches, evaluate, load_checkpoint, save_checkpoint, shard_loss, step, to_device
from . import objective as obj
from .budget_fit import fit_arch
from .collapse import parameter_free_share


REMEDIES = ("beta", "darts-", "none")


@record("search_config")
@dataclass(frozen=True)
class SearchConfig:
    epochs: int = 10
    warmup: int = 3
    batch: int = 64
    w_lr: float = 3e-3
    a_lr: float = 3e-3
    latency_form: str = "hinge"               # hinge | add | mul (penalise E > T only | ProxylessNAS add#linear | mul#log)
    latency_weight: float = 0.5               # lambda of the hinge and add forms
    latency_beta: float = 0.3                 # beta of the mul form
    noise: str = "none"                       # none | gauss | uniform | direct (QuantNAS; direct = fake-quant STE)
    noise_p0: float | None = None             # full-precision share; None = 1/(|bits|+1)
    entropy_weight: float = 0.0               # lambda_H (QuantNAS: 1e-3), scaled by the warm-up + ramp schedule
    bitops_weight: float = 0.0                # eta: E[BitOps]/BitOps_0 in the alpha loss
    sparsity_weight: float = 0.0              # E[weights kept]/W_0 in the alpha loss (DASS ops)
    sparse_stages: tuple[float, float] = (0.3, 0.2)  # DASS dense / prune fractions of the epochs; rest fine-tunes
    selection: str = "argmax"                 # argmax | pt (DARTS-PT perturbation)
    pt_epochs: int = 1                        # fine-tune epochs after each DARTS-PT projection
    remedy: str = "beta"                      # beta (β-DARTS) | darts- (auxiliary skip) | none
    remedy_weight: float = 1.0                # β-DARTS's lambda_max (ramped from 0); DARTS-'s initial skip weight
    subsample: int = 500                      # images of the weight split the search sees (0: all)
    fit_budget: bool = True                   # swap argmax ops until the table sum meets the budget (budget_fit.py)


@record("search_result")
@dataclass(frozen=True)
class SearchResult:
    arch: Arch
    alphas: tuple[tuple[float, ...], ...]            # final softmax(alpha) per layer
    history: tuple[dict, ...] = field(default=())     # per epoch: losses, accuracy, costs, probs, collapse signal
    budget_ms: float = 0.0
    expected_ms: float = 0.0
    fitted: tuple[dict, ...] = field(default=())      # the budget fit's swaps after selection (budget_fit.py)


class ArchObjective:
    """The alpha-step loss: CE with its latency term, + entropy, BitOps and weights-kept terms."""

    def __init__(self, net: Supernet, table: LatencyTable, budget_ms: float, cfg: SearchConfig, device: str = "cpu"):
        space = net.space
        self.cfg, self.budget_ms, self.fixed_ms = cfg, budget_ms, table.fixed_ms
        self.lat = [torch.tensor(c, device=device) for c in table.layer_costs(space)]
        self.bitops = [torch.tensor(c, device=device) for c in cost.layer_costs(space, "bitops")] if cfg.bitops_weight else None
        self.kept = [torch.tensor(c, device=device) for c in cost.layer_costs(space, "kept_params")] if cfg.sparsity_weight else None
        self.bitops0 = obj.uniform_cost(self.bitops) if self.bitops else 1.0
        self.kept0 = obj.uniform_cost(self.kept) if self.kept else 1.0

    def __call__(self, ce: torch.Tensor, probs: list[torch.Tensor], epoch: int,
                 alphas: list[torch.Tensor] | None = None) -> torch.Tensor:
        cfg = self.cfg
        loss = obj.latency_loss(ce, obj.expected_latency(probs, self.lat, self.fixed_ms), self.budget_ms,
                                cfg.latency_form, cfg.latency_weight, cfg.latency_beta)
        if cfg.remedy == "beta" and alphas is not None:
            lam = obj.linear_ramp(epoch, cfg.epochs, cfg.warmup, 0.0, cfg.remedy_weight)
            loss = loss + lam * obj.beta_decay(alphas)
        if cfg.entropy_weight:
            loss = loss + cfg.entropy_weight * obj.entropy_schedule(epoch, cfg.epochs, cfg.warmup) * obj.entropy(probs)
        if self.bitops:
            loss = loss + cfg.bitops_weight * obj.expected_cost(probs, self.bitops) / self.bitops0
        if self.kept:
            loss = loss + cfg.sparsity_weight * obj.expected_cost(probs, self.kept) / self.kept0
        return loss

    @torch.no_grad()
    def report(self, probs: list[torch.Tensor]) -> dict:
        out = {"expected_ms": float(obj.expected_latency(probs, self.lat, self.fixed_ms)),
               "entropy": float(obj.entropy(probs))}
        if self.bitops:
            out["bitops_rel"] = float(obj.expected_cost(probs, self.bitops) / self.bitops0)
        if self.kept:
            out["kept_rel"] = float(obj.expected_cost(probs, self.kept) / self.kept0)
        return out


def build_supernet(space: SpaceConfig, cfg: SearchConfig) -> Supernet:
    net = Supernet(space)
    if cfg.noise != "none":
        net.set_transform(QuantNoise(cfg.noise, cfg.noise_p0))
    return net


def search(space: SpaceConfig, data: DataSplits, table: LatencyTable, budget_ms: float, cfg: SearchConfig,
           seed: int, checkpoint: Path | None = None,
           on_epoch: Callable[[int, dict], None] | None = None, compute: Compute = CPU) -> SearchResult:
    if cfg.selection not in ("argmax", "pt"):
        raise ValueError(f"unknown selection {cfg.selection!r}; use argmax or pt")
    if cfg.remedy not in REMEDIES:
        raise ValueError(f"unknown collapse remedy {cfg.remedy!r}; use {', '.join(REMEDIES)}")
    return compute.run(_search, space, data.subsample(cfg.subsample), table, budget_ms, cfg, seed, checkpoint,
                       local={"on_epoch": on_epoch})


def _search(space, data, table, budget_ms, cfg, seed, checkpoint, compute: Compute, on_epoch=None) -> SearchResult:
    torch.manual_seed(seed)
    net = build_supernet(space, cfg).to(compute.device)
    objective = ArchObjective(net, table, budget_ms, cfg, compute.device)
    w_opt = torch.optim.Adam(net.weight_parameters(), lr=cfg.w_lr, weight_decay=3e-5)
    a_opt = torch.optim.Adam(net.arch_parameters(), lr=cfg.a_lr, betas=(0.5, 0.999))
    start, history = 0, []
    state = load_checkpoint(checkpoint, compute) if checkpoint else None
    if state is not None:
        net.load_state_dict(state["net"])
        w_opt.load_state_dict(state["w_opt"])
        a_opt.load_state_dict(state["a_opt"])
        start, history = state["epoch"], state["history"]
    ce = nn.CrossEntropyLoss()
    has_sparse = bool(sparse.sparse_layers(net))
    alpha_params = list(net.arch_parameters())
    for epoch in range(start, cfg.epochs):
        rng = np.random.default_rng(seed * 7919 + epoch)
        torch.manual_seed(seed * 7919 + epoch)
        phase = None
        if has_sparse:
            phase, starts = sparse.phase_at(epoch, cfg.epochs, cfg.sparse_stages)
            sparse.set_phase(net, phase, start=starts)
        trainable = [p for p in net.weight_parameters() if p.requires_grad]
        net.aux_skip = obj.linear_ramp(epoch, cfg.epochs, 0, cfg.remedy_weight, 0.0) if cfg.remedy == "darts-" else 0.0
        net.train()
        # the alpha pass starts at the first alpha step: its permutation is drawn from ``rng``
        # after the weight pass's, whether or not the loaders prefetch (worker processes)
        a_iter = None
        stats = {"w_loss": 0.0, "a_loss": 0.0, "steps": 0}
        with batchnorm_sync.synced(net, compute.distributed):
            for xb, yb in batches(*data.weights, cfg.batch, rng, compute, shard=True):
                xb, yb = to_device(xb, yb, compute)
                if epoch >= cfg.warmup:
                    pair = next(a_iter, None) if a_iter is not None else None
                    if pair is None:   # first alpha step of the epoch, or the alpha split ran out: cycle it
                        a_iter = iter(batches(*data.alphas, cfg.batch, rng, compute, shard=True))
                        pair = next(a_iter)
                    xa, ya = pair
                    xa, ya = to_device(xa, ya, compute)
                    a_opt.zero_grad()
                    # the CE first, then the softmax: autograd then sums the alpha gradients in the order
                    # the single-process search always has (bit-identical results)
                    a_ce = shard_loss(ce, net, xa, ya, compute)
                    if a_ce is None:
                        a_ce = torch.zeros((), device=compute.device)
                    a_loss = objective(a_ce, [torch.softmax(a, 0) for a in net.alphas], epoch, list(net.alphas))
                    n_a = step(alpha_params, a_loss, len(ya), compute)
                    a_opt.step()
                    stats["a_loss"] += a_loss.item() if not compute.distributed else a_loss.item() * len(ya) / max(1, n_a)
                w_opt.zero_grad()
                w_loss = shard_loss(ce, net, xb, yb, compute)
                n_w = step(trainable, w_loss, len(yb), compute)
                nn.utils.clip_grad_norm_(trainable, 5.0)
                w_opt.step()
                if w_loss is not None:
                    stats["w_loss"] += w_loss.item() if not compute.distributed else w_loss.item() * len(yb) / max(1, n_w)
                stats["steps"] += 1
        compute.average_buffers(net)
        stats["w_loss"], stats["a_loss"] = compute.all_sum([stats["w_loss"], stats["a_loss"]])
        derived = net.derive()
        record_ = {
            "epoch": epoch + 1,
            "w_loss": stats["w_loss"] / max(1, stats["steps"]),
            "a_loss": stats["a_loss"] / max(1, stats["steps"]) if epoch >= cfg.warmup else None,
            "val_acc": evaluate(net, *data.val, compute=compute),
            **objective.report(net.probabilities()),
            "skip_share_probs": net.parameter_free_share(),
            "skip_share_arch": parameter_free_share(derived),
            "sparse_phase": phase,
            "aux_skip": net.aux_skip,
            "probs": [p.tolist() for p in net.probabilities()],
            "arch": str(derived),
        }
        history.append(record_)
        if checkpoint:
            save_checkpoint(checkpoint, {"net": net.state_dict(), "w_opt": w_opt.state_dict(), "a_opt": a_opt.state_dict(),
                                         "epoch": epoch + 1, "history": history}, compute)
        if on_epoch:
            on_epoch(epoch + 1, record_)
    net.aux_skip = 0.0   # the derived network has no auxiliary skip; selection scores it without
    arch = net.derive()
    if cfg.selection == "pt":
        from .select import perturbation_select

        arch = perturbation_select(net, data, cfg, seed, compute)
    probs = net.probabilities()
    arch, fitted = fit_arch(space, arch, [p.tolist() for p in probs], table, budget_ms) if cfg.fit_budget else (arch, ())
    return SearchResult(arch=arch, alphas=tuple(tuple(float(v) for v in p) for p in probs), history=tuple(history),
                        budget_ms=budget_ms, expected_ms=objective.report(probs)["expected_ms"], fitted=fitted)
