"""The building units every op is made of.

Ops are written once in terms of these units; the quantize stage converts each unit type to its
brevitas twin (``edgenas.quantize.convert``), folding BatchNorm into the conv on the way. Keeping
the unit set small is what makes that conversion (and the exported QCDQ graph) predictable.
"""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hswish": nn.Hardswish, None: nn.Identity}


class ConvBNAct(nn.Module):
    """conv (no bias) -> BatchNorm -> activation. The unit of every convolutional op."""

    def __init__(self, cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1, act: str | None = "relu6"):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, padding=k // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = ACTIVATIONS[act]()
        self.act_name = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Add(nn.Module):
    """Residual add as a module, so the quantizer can requantize its output."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


class Classifier(nn.Module):
    """Global average pool -> flatten -> linear."""

    def __init__(self, cin: int, num_classes: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(x), 1))
