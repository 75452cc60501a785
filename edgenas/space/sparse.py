"""DASS sparse layers: a learned score per weight, top-k mask, straight-through gradient.

Mousavi, Loni, Alibeigi, Daneshtalab, "DASS: Differentiable Architecture Search for Sparse
Neural Networks", ACM TECS 22(5s) 2023 (arXiv 2207.06968); the layers are HYDRA's "popup scores"
(``DASS/layers.py``: ``SubnetConv``/``SubnetLinear``).

* Forward uses ``W * M`` with ``M`` = 1 on the top ``keep`` fraction of ``|S|`` within the layer
  (``keep`` is DASS's k, the fraction *kept*; exactly ``round(keep * numel)`` weights survive).
* Backward is straight-through to the scores: dL/dS = sign(S) * W * dL/d(W*M).
* Scores start Kaiming-normal and are re-initialised from the weights when pruning starts,
  S = sqrt(6 / fan_in) * W / max|W|, so the first mask is the magnitude mask.
* Training follows DASS's three stages: dense pre-training (mask off), pruning (scores only,
  weights frozen), fine-tuning (weights only, mask fixed) — ``set_phase`` switches between them,
  ``train_sparse`` runs them for a final model.
* Export keeps zeros in place: the brevitas converter of ``SparseConvBNAct`` (in
  ``edgenas.quantize.convert``) starts QAT from ``W * M`` and re-applies ``M`` every training
  forward, so QAT cannot regrow pruned weights; ``densify`` gives a plain float copy.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .units import ConvBNAct

PHASES = ("dense", "prune", "finetune")


class _TopK(torch.autograd.Function):
    """Mask of the ``k`` largest entries; the gradient passes through unchanged (HYDRA's GetSubnet)."""

    @staticmethod
    def forward(ctx, scores: torch.Tensor, k: int) -> torch.Tensor:
        mask = torch.zeros_like(scores)
        mask.view(-1)[torch.topk(scores.reshape(-1), k, sorted=False).indices] = 1.0
        return mask

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


class _Sparse:
    """Shared score logic of ``SparseConv2d`` and ``SparseLinear`` (a mixin over the torch layer)."""

    keep: float
    masking: bool

    def _init_scores(self, keep: float) -> None:
        if not 0 < keep <= 1:
            raise ValueError(f"keep fraction must be in (0, 1], got {keep}")
        self.keep, self.masking = keep, True
        self.scores = nn.Parameter(torch.empty_like(self.weight))
        nn.init.kaiming_normal_(self.scores)

    @property
    def k(self) -> int:
        return max(1, round(self.keep * self.weight.numel()))

    def mask(self) -> torch.Tensor:
        return _TopK.apply(self.scores.abs(), self.k)

    def effective_weight(self, weight: torch.Tensor | None = None) -> torch.Tensor:
        w = self.weight if weight is None else weight
        return w * self.mask() if self.masking else w

    @torch.no_grad()
    def reinit_scores(self) -> None:
        """DASS/HYDRA's scaled init at the start of pruning: the first mask is the magnitude mask."""
        fan_in = self.weight[0].numel()
        self.scores.copy_(math.sqrt(6 / fan_in) * self.weight / self.weight.abs().max().clamp_min(1e-12))


class SparseConv2d(_Sparse, nn.Conv2d):
    def __init__(self, *args, keep: float = 0.5, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_scores(keep)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.effective_weight(), self.bias)


class SparseLinear(_Sparse, nn.Linear):
    def __init__(self, *args, keep: float = 0.5, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_scores(keep)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.effective_weight(), self.bias)


class SparseConvBNAct(ConvBNAct):
    """``ConvBNAct`` whose conv is a ``SparseConv2d``: the unit of DASS's sparse op variants."""

    def __init__(self, cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1,
                 act: str | None = "relu6", keep: float = 0.5):
        super().__init__(cin, cout, k, stride, groups, act)
        self.conv = SparseConv2d(cin, cout, k, stride, padding=k // 2, groups=groups, bias=False, keep=keep)

    def to_dense(self) -> ConvBNAct:
        """A plain unit with the masked weights (zeros in place) and the same BatchNorm."""
        dense = ConvBNAct(self.conv.in_channels, self.conv.out_channels, self.conv.kernel_size[0], self.conv.stride[0],
                          self.conv.groups, self.act_name)
        dense.bn = copy.deepcopy(self.bn)
        with torch.no_grad():
            dense.conv.weight.copy_(self.conv.effective_weight())
        return dense.train(self.training)


def sparse_layers(net: nn.Module) -> list[_Sparse]:
    return [m for m in net.modules() if isinstance(m, _Sparse)]


def set_phase(net: nn.Module, phase: str, start: bool = False) -> None:
    """Put every sparse layer of ``net`` in a DASS stage (idempotent, so resume just re-applies it).

    ``dense``: mask off, everything trains. ``prune``: mask on, only scores train (all other
    weights of the net frozen, as in HYDRA); ``start=True`` re-initialises the scores from the
    weights. ``finetune``: mask on and fixed, weights train. Architecture weights are not touched.
    """
    if phase not in PHASES:
        raise ValueError(f"unknown sparse phase {phase!r}; use one of {PHASES}")
    layers = sparse_layers(net)
    if not layers:
        return
    scores = {id(m.scores) for m in layers}
    arch = {id(p) for p in getattr(net, "arch_parameters", lambda: [])()}
    for p in net.parameters():
        if id(p) in arch:
            continue
        p.requires_grad_((id(p) in scores) if phase == "prune" else (id(p) not in scores))
    for m in layers:
        m.masking = phase != "dense"
        if phase == "prune" and start:
            m.reinit_scores()


def phase_at(epoch: int, epochs: int, stages: tuple[float, float]) -> tuple[str, bool]:
    """DASS stage of ``epoch`` when ``stages`` = (dense, prune) fractions of ``epochs``; the rest
    fine-tunes. Returns ``(phase, starts_here)``."""
    dense = int(round(stages[0] * epochs))
    prune = max(1, int(round(stages[1] * epochs)))
    if epoch < dense:
        return "dense", epoch == 0
    if epoch < dense + prune:
        return "prune", epoch == dense
    return "finetune", epoch == dense + prune


def train_sparse(model: nn.Module, train: tuple, epochs: int, lr: float, seed: int,
                 stages: tuple[float, float] = (0.4, 0.2), compute=None) -> nn.Module:
    """Final training of a net with sparse ops: dense pre-train, prune (scores), fine-tune (weights).

    Nets without sparse layers get one plain ``fit`` of all epochs, so callers need not branch.
    Each ``fit`` runs on ``compute`` (device and ranks, ``compute.Compute``).
    """
    from ..compute import CPU
    from ..train import fit

    compute = compute or CPU
    if not sparse_layers(model):
        return fit(model, train, epochs, lr, seed, compute=compute)
    bounds = [phase_at(e, epochs, stages)[0] for e in range(epochs)]
    for i, phase in enumerate(PHASES):
        n = bounds.count(phase)
        if n:
            set_phase(model, phase, start=True)
            fit(model, train, n, lr * (10 if phase == "prune" else 1), seed + i, compute=compute)
    set_phase(model, "finetune")  # scores stay frozen: later fits (QAT) must not move the mask
    return model


def densify(net: nn.Module) -> nn.Module:
    """A copy of ``net`` with every ``SparseConvBNAct`` replaced by a plain unit (zeros in place),
    for float ONNX export; quantize the sparse net itself so QAT keeps the mask."""
    out = copy.deepcopy(net)
    for module in list(out.modules()):
        for name, child in module.named_children():
            if isinstance(child, SparseConvBNAct):
                setattr(module, name, child.to_dense())
    return out


@torch.no_grad()
def weight_sparsity(net: nn.Module) -> float:
    """Fraction of exactly-zero weights over all conv and linear layers (after masking)."""
    zeros = total = 0
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            w = m.effective_weight() if isinstance(m, _Sparse) else m.weight
            zeros += int((w == 0).sum())
            total += w.numel()
    return zeros / max(1, total)
