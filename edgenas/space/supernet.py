"""The supernet (DARTS mixed ops over the space) and ``freeze(arch)``, which builds a plain net.

Every searchable layer holds one module per candidate op and one architecture weight per
``(op, bits)`` pair — a single softmax over the joint choice, as in QuantNAS's code — so bit
width is a per-layer search choice when the space offers several. ``freeze`` returns an
``nn.Module`` with no search state at all: that is what gets trained, quantized and exported.
"""

from __future__ import annotations

import torch
from torch import nn

from .arch import Arch, SpaceConfig, arch_from_choices
from .adq import wrap as adq_wrap
from .ops import PARAMETER_FREE, create_op
from .units import Classifier, ConvBNAct


def _stem(in_channels: int, stem: int) -> nn.Module:
    return ConvBNAct(in_channels, stem, 3, 1, act="relu6")


def _head(cin: int, head: int, num_classes: int) -> nn.Sequential:
    layers: list[nn.Module] = [ConvBNAct(cin, head, 1, act="relu6")] if head else []
    return nn.Sequential(*layers, Classifier(head or cin, num_classes))


class MixedOp(nn.Module):
    """DARTS mixed op: ``sum_i softmax(alpha)_i * op_i(x)`` over the ``(op, bits)`` candidates.

    ``transform`` (optional) wraps each op call with the candidate's bit width; the QuantNAS noise
    uses it to perturb weights/activations per bit width. Without it, bit choices of one op share
    its output and only their weights add up.
    """

    def __init__(self, cin: int, cout: int, stride: int, candidates: list[tuple[str, int]], adq: bool = False):
        super().__init__()
        self.candidates = candidates
        self.op_names = sorted({op for op, _ in candidates}, key=[op for op, _ in candidates].index)
        make = (lambda n: adq_wrap(create_op(n, cin, cout, stride), cin)) if adq else (lambda n: create_op(n, cin, cout, stride))
        self.ops = nn.ModuleDict({name: make(name) for name in self.op_names})
        self.transform = None

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        out = 0
        for name in self.op_names:
            idx = [i for i, (op, _) in enumerate(self.candidates) if op == name]
            if not bool((weights[idx] != 0).any()):  # masked out or projected away: costs nothing
                continue
            if self.transform is None:
                out = out + weights[idx].sum() * self.ops[name](x)
            else:
                bits = [self.candidates[i][1] for i in idx]
                out = out + self.transform(self.ops[name], x, weights[idx], bits)
        return out


class Supernet(nn.Module):
    """All candidate ops of a space, with architecture weights kept apart from network weights."""

    def __init__(self, space: SpaceConfig):
        super().__init__()
        self.space = space
        self.stem = _stem(space.in_channels, space.stem)
        positions = space.positions()
        self.cells = nn.ModuleList(MixedOp(cin, cout, s, space.candidates(i), space.adq) for i, (cin, cout, s) in enumerate(positions))
        self.head = _head(positions[-1][1] if positions else space.stem, space.head, space.num_classes)
        # One vector per layer, initialised at zero (uniform), as in DARTS and QuantNAS.
        self.alphas = nn.ParameterList(nn.Parameter(torch.zeros(len(c.candidates))) for c in self.cells)
        # DARTS-'s auxiliary skip (Chu et al., ICLR 2021): ``aux_skip * x`` beside every layer whose
        # input and output shapes match, the weight set per epoch by the search (1 decaying to 0).
        self.aux_skip = 0.0
        self._identity = [cin == cout and s == 1 for cin, cout, s in positions]

    def forward(self, x: torch.Tensor, weights: list[torch.Tensor] | None = None) -> torch.Tensor:
        """``weights`` (optional): per-layer mixture weights to use instead of softmax(alpha) —
        perturbation-based selection masks out or fixes candidates this way."""
        x = self.stem(x)
        for i, cell in enumerate(self.cells):
            y = cell(x, torch.softmax(self.alphas[i], dim=0) if weights is None else weights[i])
            x = y + self.aux_skip * x if self.aux_skip and self._identity[i] else y
        return self.head(x)

    def set_transform(self, transform) -> None:
        """Install a ``MixedOp.transform`` (e.g. ``noise.QuantNoise``) in every searchable layer."""
        for cell in self.cells:
            cell.transform = transform

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(a) for a in self.alphas}
        return [p for p in self.parameters() if id(p) not in arch]

    def arch_parameters(self) -> list[nn.Parameter]:
        return list(self.alphas)

    def probabilities(self) -> list[torch.Tensor]:
        return [torch.softmax(a.detach(), dim=0) for a in self.alphas]

    def derive(self) -> Arch:
        """Argmax over each layer's joint (op, bits) vector (a plain argmax: QuantNAS's code starts
        its running max at 0 and so silently picks op 0 when every alpha is negative)."""
        choices = [cell.candidates[int(torch.argmax(a))] for cell, a in zip(self.cells, self.alphas)]
        return arch_from_choices(self.space, choices)

    def parameter_free_share(self) -> float:
        """Mean over layers of the softmax mass on parameter-free ops (skip): DARTS's collapse signal."""
        shares = [sum(float(p[j]) for j, (op, _) in enumerate(cell.candidates) if op in PARAMETER_FREE)
                  for cell, p in zip(self.cells, self.probabilities())]
        return sum(shares) / max(1, len(shares))


class FrozenNet(nn.Module):
    """A plain network for one architecture: stem, chosen ops, head."""

    def __init__(self, arch: Arch):
        super().__init__()
        arch.validate()
        self.arch = arch
        self.stem = _stem(arch.in_channels, arch.stem)
        layers, cin = [], arch.stem
        for layer in arch.layers:
            layers.append(create_op(layer.op, cin, layer.cout, layer.stride))
            cin = layer.cout
        self.layers = nn.Sequential(*layers)
        self.head = _head(cin, arch.head, arch.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.stem(x)))


def freeze(arch: Arch) -> nn.Module:
    return FrozenNet(arch)
