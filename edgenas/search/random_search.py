"""Random search at the same compute as the differentiable search — the baseline NAS must beat.

Random sampling from a good space often matches a searched architecture (Li & Talwalkar 2019;
Yu et al., "Evaluating the search phase of NAS", 2020), so every claim about the search is made
against this strategy. Compute is matched in multiply-accumulates, not wall time, so the
comparison is deterministic. The DARTS search costs ``MACs(supernet)`` per training sample, for
``epochs × |weights|`` weight-step samples plus, after warm-up, one alpha batch per weight batch
(the alpha split is cycled, so that is about ``|weights|`` samples per epoch, not ``|alphas|``;
DARTS-PT's projection fine-tuning is not counted: the baseline matches argmax search). Random
search spends the same MACs training sampled architectures (each for ``epochs_each`` epochs on
the training split) and keeps the best on the validation split. Samples are drawn uniformly from
each layer's candidates and rejected when the latency model predicts them over the budget (the
same model DARTS searches with).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..compute import CPU, Compute
from ..data import DataSplits
from ..latency.table import LatencyTable
from ..space.arch import Arch, SpaceConfig, arch_from_choices
from ..space.cost import module_cost
from ..space.supernet import Supernet, freeze
from ..train import evaluate, fit
from .darts import SearchConfig, SearchResult


@dataclass(frozen=True)
class RandomConfig:
    epochs_each: int = 3
    max_samples: int = 64
    max_rejections: int = 1000


def alpha_samples_per_epoch(n_w: int, n_a: int, batch: int) -> int:
    """Samples the alpha steps of one epoch see: ``darts.search`` takes one alpha batch per weight
    batch and restarts the alpha split's iterator when it runs out (partial last batch included)."""
    sizes = [min(batch, n_a - i) for i in range(0, n_a, batch)]
    steps = -(-n_w // batch)
    return sum(sizes) * (steps // len(sizes)) + sum(sizes[: steps % len(sizes)]) if sizes else 0


def darts_macs(space: SpaceConfig, data: DataSplits, cfg: SearchConfig) -> float:
    """Training MACs of the DARTS search (forward ≈ backward/2 cancels out on both sides; the
    forward-only validation and DARTS-PT scoring passes are not training and are not counted)."""
    data = data.subsample(cfg.subsample)
    shape = space.input_shape[1:]
    per_sample = module_cost(Supernet(space), shape).macs
    n_w, n_a = len(data.weights[1]), len(data.alphas[1])
    return per_sample * (cfg.epochs * n_w + max(0, cfg.epochs - cfg.warmup) * alpha_samples_per_epoch(n_w, n_a, cfg.batch))


def sample_arch(space: SpaceConfig, rng: np.random.Generator) -> Arch:
    choices = []
    for i in range(len(space.positions())):
        cands = space.candidates(i)
        choices.append(cands[int(rng.integers(len(cands)))])
    return arch_from_choices(space, choices)


def random_search(space: SpaceConfig, data: DataSplits, table: LatencyTable, budget_ms: float, cfg: SearchConfig,
                  seed: int, rcfg: RandomConfig = RandomConfig(),
                  on_sample: Callable[[int, dict], None] | None = None, compute: Compute = CPU) -> SearchResult:
    """Sample, train and validate architectures until the DARTS compute is spent (on the same
    ``cfg.subsample`` of the data that DARTS searches on). Each sample trains on ``compute``."""
    data = data.subsample(cfg.subsample)
    rng = np.random.default_rng(seed)
    budget_macs = darts_macs(space, data, cfg)
    shape = space.input_shape[1:]
    n_train = len(data.train[1])
    spent, history, best = 0.0, [], None
    rejections = 0
    while spent < budget_macs and len(history) < rcfg.max_samples:
        arch = sample_arch(space, rng)
        if table.arch_sum(arch) > budget_ms:
            rejections += 1
            if rejections > rcfg.max_rejections:
                break
            continue
        torch.manual_seed(seed * 1009 + len(history))
        model = freeze(arch)
        fit(model, data.train, rcfg.epochs_each, 3e-3, seed + len(history), compute=compute)
        spent += module_cost(model, shape).macs * n_train * rcfg.epochs_each
        rec = {"sample": len(history) + 1, "arch": str(arch), "val_acc": evaluate(model, *data.val),
               "predicted_ms": table.arch_sum(arch), "macs_spent": spent, "macs_budget": budget_macs}
        history.append(rec)
        if best is None or rec["val_acc"] > best[1]:
            best = (arch, rec["val_acc"])
        if on_sample:
            on_sample(len(history), rec)
    if best is None:
        raise ValueError(f"no architecture of the space is predicted under the {budget_ms:.3f} ms budget")
    return SearchResult(arch=best[0], alphas=(), history=tuple(history), budget_ms=budget_ms,
                        expected_ms=table.arch_sum(best[0]))
