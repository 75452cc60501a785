"""Perturbation-based architecture selection from a trained supernet (DARTS-PT); argmax is
``Supernet.derive``.

Wang, Cheng, Chen, Tang, Hsieh, "Rethinking Architecture Selection in Differentiable NAS",
ICLR 2021 (code ``ruocwang/darts-pt``, ``sota/cnn/projection.py``). The magnitude of alpha is a
poor proxy for an op's contribution to the supernet (skip connections win by magnitude while
hurting when chosen); DARTS-PT asks the supernet directly: visit the layers in random order, mask
out each candidate in turn (its mixture weight set to zero, the others untouched) and measure the
supernet's validation accuracy; keep the candidate whose removal hurts most (lowest accuracy;
ties broken by the highest loss), project the layer onto it (one-hot) and fine-tune the
supernet's weights for ``pt_epochs`` at lr/10 before the next layer. Our space is a chain, so
there is no topology step. Validation here is the alpha split, as DARTS's "valid" half.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..data import DataSplits
from ..space.arch import Arch, arch_from_choices
from ..space.supernet import Supernet
from ..compute import CPU, Compute
from .. import batchnorm_sync
from ..train import batches, shard_loss, step, to_device


@torch.no_grad()
def supernet_score(net: Supernet, x: np.ndarray, y: np.ndarray, weights: list[torch.Tensor],
                   batch: int = 256, compute: Compute = CPU) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of the supernet with explicit per-layer mixture weights
    (each rank scores its shard; the sums are all-reduced)."""
    net.eval()
    correct, loss = 0, 0.0
    ce = nn.CrossEntropyLoss(reduction="sum")
    weights = [w.to(compute.device) for w in weights]
    for xb, yb in batches(x, y, batch, None, compute, shard=True):
        xb, yb = to_device(xb, yb, compute)
        out = net(xb, weights)
        correct += int((out.argmax(1) == yb).sum())
        loss += float(ce(out, yb))
    correct, loss = compute.all_sum([correct, loss])
    return correct / max(1, len(x)), loss / max(1, len(x))


def _finetune(net: Supernet, data: DataSplits, weights: list[torch.Tensor], epochs: int, lr: float, seed: int,
              batch: int, compute: Compute = CPU) -> None:
    params = [p for p in net.weight_parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr, weight_decay=3e-5)
    ce = nn.CrossEntropyLoss()
    weights = [w.to(compute.device) for w in weights]
    for e in range(epochs):
        net.train()
        with batchnorm_sync.synced(net, compute.distributed):
            for xb, yb in batches(*data.weights, batch, np.random.default_rng(seed + e), compute, shard=True):
                xb, yb = to_device(xb, yb, compute)
                opt.zero_grad()
                step(params, shard_loss(ce, lambda x: net(x, weights), xb, yb, compute), len(yb), compute)
                nn.utils.clip_grad_norm_(params, 5.0)
                opt.step()
        compute.average_buffers(net)


def perturbation_select(net: Supernet, data: DataSplits, cfg, seed: int, compute: Compute = CPU) -> Arch:
    """DARTS-PT operation selection over every searchable layer (``cfg``: a ``SearchConfig``)."""
    rng = np.random.default_rng(seed)
    weights = [p.clone() for p in net.probabilities()]
    choices: list = [None] * len(net.cells)
    for i in rng.permutation(len(net.cells)):
        cands = net.cells[i].candidates
        if len(cands) == 1:
            best = 0
        else:
            scores = []
            for j in range(len(cands)):
                trial = list(weights)
                trial[i] = weights[i].clone()
                trial[i][j] = 0.0
                acc, loss = supernet_score(net, *data.alphas, trial, compute=compute)
                scores.append((acc, -loss))
            best = min(range(len(cands)), key=scores.__getitem__)
        choices[i] = cands[best]
        weights[i] = torch.nn.functional.one_hot(torch.tensor(best), len(cands)).float()
        if cfg.pt_epochs:
            _finetune(net, data, weights, cfg.pt_epochs, cfg.w_lr / 10, seed + int(i), cfg.batch, compute)
    return arch_from_choices(net.space, choices)
