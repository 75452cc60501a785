"""ADQ (Adaptive Deviation for Quantization): a residual block rescaled by its input's spread.

From QuantNAS (Shvetsov et al., IEEE Access 2024, arXiv 2208.14839; ``sr_models/ADN.py`` with
``skip_mode=False``):

    out = shortcut(x) + phi(sigma(x)) * F(BN(x))

sigma is the per-sample standard deviation of the block input over (C, H, W), phi a scalar affine
map (a 1->1 1x1 conv, weight initialised to 1.5, bias 0), BN normalises the block input. AdaDM
rescales by exp(phi(log sigma)) and adds a second BN inside the body; ADQ drops both, which the
paper motivates as avoiding BatchNorm's harm to quantized residual bodies. Why it helps search
with quantization noise: the body always sees a normalised input whatever the noise did upstream,
and the block restores the input's scale on the way out.

Here it wraps any op built on ``ops._Block`` (MBConv, fused-MBConv, DW-separable, bottleneck)
when ``SpaceConfig.adq`` is set; parameter-free ops are left alone. It is a search-time
stabiliser: ``freeze`` builds plain ops, because per-sample std has no integer kernel in the
INT8 deployment path (TVM would fall back to float around every block).
"""

from __future__ import annotations

import torch
from torch import nn

from .ops import _Block


class ADQ(nn.Module):
    def __init__(self, block: _Block, cin: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        self.phi = nn.Conv2d(1, 1, 1)
        with torch.no_grad():
            self.phi.weight.fill_(1.5)
            self.phi.bias.zero_()
        self.body = block.body
        self.residual = block.residual
        self.shortcut = block.shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sigma = x.flatten(1).std(dim=1, unbiased=False).reshape(-1, 1, 1, 1)
        y = self.phi(sigma) * self.body(self.bn(x))
        if self.shortcut is not None:
            return self.shortcut(x) + y
        return x + y if self.residual else y


def wrap(op: nn.Module, cin: int) -> nn.Module:
    """``ADQ(op)`` for block ops; other ops (skip) unchanged."""
    return ADQ(op, cin) if isinstance(op, _Block) else op
