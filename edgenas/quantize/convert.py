"""Convert a frozen float net into its brevitas QAT twin, unit by unit.

Each unit type of ``edgenas.space.units`` has one converter (a registry). BatchNorm is folded
into the conv *before* QAT, so the exported QCDQ graph is ``DQ(x), DQ(w), DQ(bias) -> Conv ->
Relu -> Q`` with no BatchNormalization left, which is the shape the TVM integer rewrite maps to
one int32-accumulating conv and a requantize. Activations are uint8 after ReLU (the full range
is used) and int8 elsewhere; biases are int32 with scale s_x*s_w.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..registry import Registry
from ..space.units import Add, Classifier, ConvBNAct
from .recipe import QuantRecipe

CONVERTERS: Registry = Registry("unit converter")


def _quants(recipe: QuantRecipe, w_bits: int, a_bits: int):
    import brevitas.quant as bq

    weight = bq.Int8WeightPerChannelFloat if recipe.weight_per_channel else bq.Int8WeightPerTensorFloat
    return dict(
        weight=dict(weight_quant=weight, weight_bit_width=w_bits, bias_quant=bq.Int32Bias),
        signed=dict(act_quant=bq.Int8ActPerTensorFloat, bit_width=a_bits, return_quant_tensor=True),
        unsigned=dict(act_quant=bq.Uint8ActPerTensorFloat, bit_width=a_bits, return_quant_tensor=True),
    )


def fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and bias of the conv with the (eval-mode) BatchNorm folded in."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    w = conv.weight.detach() * scale.reshape(-1, 1, 1, 1)
    b = bn.bias.detach() - bn.running_mean * scale
    if conv.bias is not None:
        b = b + conv.bias.detach() * scale
    return w, b


class QuantConvAct(nn.Module):
    def __init__(self, unit: ConvBNAct, q: dict):
        super().__init__()
        import brevitas.nn as qnn

        c = unit.conv
        self.conv = qnn.QuantConv2d(
            c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding, groups=c.groups, bias=True,
            return_quant_tensor=True, **q["weight"],
        )
        w, b = fold_bn(c, unit.bn)
        with torch.no_grad():
            self.conv.weight.copy_(w)
            self.conv.bias.copy_(b)
        if unit.act_name in ("relu", "relu6"):
            self.act = qnn.QuantReLU(**q["unsigned"])
        elif unit.act_name is None:
            self.act = qnn.QuantIdentity(**q["signed"])
        else:  # float activation, requantized after
            self.act = nn.Sequential(type(unit.act)(), qnn.QuantIdentity(**q["signed"]))

    def forward(self, x):
        return self.act(self.conv(x))


class QuantAdd(nn.Module):
    """Residual add on the dequantized values, requantized to int8 (scales of the two inputs differ)."""

    def __init__(self, q: dict):
        super().__init__()
        import brevitas.nn as qnn

        self.q = qnn.QuantIdentity(**q["signed"])

    def forward(self, a, b):
        return self.q(getattr(a, "value", a) + getattr(b, "value", b))


class QuantClassifier(nn.Module):
    def __init__(self, unit: Classifier, q: dict):
        super().__init__()
        import brevitas.nn as qnn

        self.pool = nn.AdaptiveAvgPool2d(1)
        self.q = qnn.QuantIdentity(**q["signed"])
        fc = unit.fc
        self.fc = qnn.QuantLinear(fc.in_features, fc.out_features, bias=True, **q["weight"])
        with torch.no_grad():
            self.fc.weight.copy_(fc.weight)
            self.fc.bias.copy_(fc.bias)

    def forward(self, x):
        return self.fc(self.q(torch.flatten(self.pool(x), 1)))


class QuantSparseConvAct(QuantConvAct):
    """DASS sparse unit (``edgenas.space.sparse.SparseConvBNAct``): QAT starts from the masked weights,
    their gradient is masked (so Adam, with or without L2 decay, never moves a zero) and the mask is
    re-applied on every training forward as a guard; the exported weights keep their zeros
    (symmetric quantization maps 0 to 0) and QAT cannot regrow pruned weights."""

    def __init__(self, unit, q: dict):
        super().__init__(unit.to_dense(), q)
        self.register_buffer("mask", (unit.conv.effective_weight() != 0).to(self.conv.weight.dtype).detach())
        self.conv.weight.register_hook(self._mask_grad)

    def _mask_grad(self, grad):
        return grad * self.mask

    def forward(self, x):
        if self.training:
            with torch.no_grad():
                self.conv.weight.mul_(self.mask)
        return super().forward(x)


CONVERTERS.register("ConvBNAct", QuantConvAct)
CONVERTERS.register("SparseConvBNAct", QuantSparseConvAct)
CONVERTERS.register("Add", QuantAdd)
CONVERTERS.register("Classifier", QuantClassifier)


def _convert_children(module: nn.Module, q: dict, keep_float: tuple[str, ...], prefix: str) -> None:
    for name, child in module.named_children():
        full = f"{prefix}{name}"
        if full in keep_float:
            continue
        kind = type(child).__name__
        if isinstance(child, (ConvBNAct, Add, Classifier)) and kind in CONVERTERS:
            setattr(module, name, CONVERTERS.get(kind)(child, q) if kind != "Add" else QuantAdd(q))
        else:
            _convert_children(child, q, keep_float, full + ".")


class QuantNet(nn.Module):
    """Input quantizer + the converted body; ``forward`` returns float logits."""

    def __init__(self, body: nn.Module, q: dict):
        super().__init__()
        import brevitas.nn as qnn

        self.inp = qnn.QuantIdentity(**q["signed"])
        self.body = body

    def forward(self, x):
        return self.body(self.inp(x))


def to_brevitas(net: nn.Module, recipe: QuantRecipe) -> nn.Module:
    """A quantized deep copy of a frozen net (which must be in eval mode for BN folding).

    Per-layer bit widths come from the net's ``arch`` (``LayerChoice.w_bits``/``a_bits``) where it
    has one; the stem, head and classifier use the recipe's widths. Every weight width is capped
    at ``recipe.max_weight_bits`` (the target's ``[int8] weight_bits``: ``recipe.for_target``), so
    a layer searched at 8 bits is built at 7 for x86-avx2 while its arch (and latency-table key)
    still says 8.
    """
    body = copy.deepcopy(net).eval()
    default = _quants(recipe, recipe.capped(recipe.weight_bits), recipe.act_bits)
    arch = getattr(net, "arch", None)
    if arch is not None and hasattr(body, "layers"):
        for layer, choice in zip(body.layers, arch.layers):
            _convert_children(layer, _quants(recipe, recipe.capped(choice.w_bits), choice.a_bits), recipe.float_layers, "")
    _convert_children(body, default, recipe.float_layers, "")
    return QuantNet(body, default)


@torch.no_grad()
def calibrate(qmodel: nn.Module, x, batches: int = 8, batch: int = 64) -> nn.Module:
    """Initialise the activation scales from statistics before QAT (brevitas collects them in
    training mode); without it QAT starts from arbitrary scales and the first epochs are wasted."""
    qmodel.train()
    for i in range(min(batches, (len(x) + batch - 1) // batch)):
        qmodel(torch.from_numpy(x[i * batch : (i + 1) * batch]))
    return qmodel.eval()
