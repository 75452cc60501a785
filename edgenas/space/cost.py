"""Analytic costs of ops and architectures: MACs, BitOps, weights kept.

BitOps follow QuantNAS's reported metric, MACs * b_w * b_a per conv/linear (the search code's
penalty is linear in b; using the product in both places is the consistent choice, docs/methods.md
§1). For a DASS sparse op the *effective* MACs are MACs * keep: the work a sparse kernel
could skip, which is what the sparsity-aware cost terms of the search reward (dense INT8 kernels
do not skip it; the measured latency table says so separately).

MACs are counted by running the module once on a dummy input with hooks on every Conv2d/Linear,
so a new op needs no hand-written formula.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

from .arch import Arch, SpaceConfig


@dataclass(frozen=True)
class OpCost:
    macs: float          # dense multiply-accumulates
    eff_macs: float      # MACs * keep (sparse ops)
    params: float        # conv/linear weights
    kept_params: float   # weights left after pruning


def _weight_keep(m: nn.Module) -> float:
    return float(getattr(m, "keep", 1.0))


def module_cost(module: nn.Module, input_shape: tuple[int, ...]) -> OpCost:
    """Costs of one forward of ``module`` on a single sample of ``input_shape`` (C, H, W)."""
    totals = [0.0, 0.0, 0.0, 0.0]

    def hook(m, inp, out):
        per_out = m.weight[0].numel()  # (cin/groups)*k*k for conv, in_features for linear
        macs = out[0].numel() * per_out
        keep = _weight_keep(m)
        totals[0] += macs
        totals[1] += macs * keep
        totals[2] += m.weight.numel()
        totals[3] += m.weight.numel() * keep

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was = module.training
    try:
        module.eval()
        with torch.no_grad():
            module(torch.zeros(1, *input_shape))
    finally:
        module.train(was)
        for h in handles:
            h.remove()
    return OpCost(*totals)


@lru_cache(maxsize=4096)
def op_cost(op: str, cin: int, cout: int, stride: int, hw: int) -> OpCost:
    """Cost of candidate op ``op`` at one position (memoised: a pure function of its arguments)."""
    from .ops import create_op

    return module_cost(create_op(op, cin, cout, stride), (cin, hw, hw))


def layer_costs(space: SpaceConfig, kind: str) -> list[list[float]]:
    """Per searchable layer, per ``(op, bits)`` candidate: ``bitops`` (effective MACs * b * b) or
    ``kept_params`` (weights left after pruning; bits do not change it)."""
    out = []
    for i, ((cin, cout, stride), hw) in enumerate(zip(space.positions(), space.spatial_sizes())):
        row = []
        for op, b in space.candidates(i):
            c = op_cost(op, cin, cout, stride, hw)
            row.append(c.eff_macs * b * b if kind == "bitops" else c.kept_params)
        out.append(row)
    return out


def arch_bitops(arch: Arch, default_bits: int = 8) -> float:
    """BitOps of a whole architecture: searchable layers at their w/a bits (effective MACs for
    sparse ops), stem and head at ``default_bits`` (the recipe's width)."""
    from .supernet import FrozenNet

    net = FrozenNet(arch)
    total = module_cost(net, arch.input_shape[1:]).macs * default_bits**2
    cin, hw = arch.stem, arch.image_size
    for layer in arch.layers:
        if layer.op != "skip":
            c = op_cost(layer.op, cin, layer.cout, layer.stride, hw)
            total += c.eff_macs * layer.w_bits * layer.a_bits - c.macs * default_bits**2
        cin, hw = layer.cout, (hw + layer.stride - 1) // layer.stride
    return total
