"""QuantNAS quantization noise: bit width as a search choice without quantizing during search.

Shvetsov, Osin, Koryakovskiy, Buchnev, Burnaev, Zaytsev, "QuantNAS: Quantization-aware Neural
Architecture Search For Efficient Deployment On Mobile Device", IEEE Access 2024 (arXiv
2208.14839); code ``On-Point-RND/QuantNAS`` (``sr_models/quant_conv_lsq.py``: ``quant_noise``,
``QuaNoiseConv2d``, ``SharedQAConv2d``).

For every conv of an op and every candidate bit width b of that op, the conv's weights and its
input activations are perturbed as x~_b = x + sg(Delta_b * eps), Delta_b = (max x - min x)/(2^b - 1)
per tensor, eps ~ N(0, 1/4) (std Delta/2, the code's default) or U(-1/2, 1/2) (the rounding-noise
model), resampled every forward. The conv sees the mixture

    x_mix = p0 * x + sum_b pi_b * x~_b,   p0 = 1/(|B|+1),   pi_b = a_b / (sum_b' a_b' + p0)

(a_b: this op's softmax weights over its bit options; the fixed full-precision share p0 keeps a
clean path for the weights), and the op's output is scaled by sum_b a_b, as in QuantNAS's ops.
Unlike the code (which detaches the noisy tensor, so weights learn only through p0), the noise is
a stop-gradient constant and the gradient passes straight through every branch (DiffQ-style).
In eval mode the noise is its expectation (zero), so validation accuracy is not a random number.

``kind="direct"`` is the paper's baseline: shared weights really fake-quantized to b bits on the
same min-max grid, with a straight-through estimator, mixed with pi_b = a_b / sum a_b and no
full-precision share (``SharedQAConv2d``).
"""

from __future__ import annotations

from contextlib import ExitStack

import torch
from torch import nn
from torch.func import functional_call

from .units import ConvBNAct

KINDS = ("none", "gauss", "uniform", "direct")


def step(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Delta_b = (max - min) / (2^b - 1) of the whole tensor (detached: it only scales the noise)."""
    return (x.detach().max() - x.detach().min()) / (2**bits - 1)


def noise_like(x: torch.Tensor, delta: torch.Tensor, kind: str = "gauss") -> torch.Tensor:
    """Delta * eps with eps ~ N(0, 1/4) (``gauss``) or U(-1/2, 1/2) (``uniform``); no gradient."""
    if kind == "gauss":
        eps = torch.randn_like(x) / 2
    elif kind == "uniform":
        eps = torch.rand_like(x) - 0.5
    else:
        raise ValueError(f"unknown noise kind {kind!r}; use gauss or uniform")
    return (delta * eps).detach()


def fake_quant(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Round to the b-bit min-max grid of the tensor, straight-through gradient (the direct baseline)."""
    lo, delta = x.detach().min(), step(x, bits).clamp_min(1e-12)
    q = torch.round((x.detach() - lo) / delta) * delta + lo
    return x + (q - x).detach()


class QuantNoise:
    """``MixedOp.transform``: run one candidate op with its per-bit noisy weights and activations.

    Stateless between calls (the per-call mixture lives in hooks removed before returning), so one
    instance can serve every layer of the supernet.
    """

    def __init__(self, kind: str = "gauss", p0: float | None = None):
        if kind not in KINDS or kind == "none":
            raise ValueError(f"noise kind must be one of {KINDS[1:]}, got {kind!r}")
        self.kind, self.p0 = kind, p0

    def mixture(self, a: torch.Tensor) -> tuple[float, torch.Tensor]:
        """``(p0, pi)`` for this op's bit weights ``a``."""
        if self.kind == "direct":
            return 0.0, a / a.sum().clamp_min(1e-12)
        p0 = 1.0 / (len(a) + 1) if self.p0 is None else self.p0
        return p0, a / (a.sum() + p0)

    def perturb(self, x: torch.Tensor, bits: list[int], p0: float, pi: torch.Tensor, training: bool,
                ref: torch.Tensor | None = None) -> torch.Tensor:
        """The mixed tensor p0*x + sum_b pi_b*x~_b (``ref``: tensor whose range sets Delta, default x).

        Written as (p0 + sum pi) * x + sum_b pi_b * sg(n_b): the same value and gradients as the
        per-branch sum, with the tensor range computed once for all bit widths.
        """
        if self.kind == "direct":
            return p0 * x + sum(w * fake_quant(x, b) for b, w in zip(bits, pi))
        out = (p0 + pi.sum()) * x
        if not training:  # the noise's expectation
            return out
        span = step(x if ref is None else ref, 1)  # max - min
        for b, w in zip(bits, pi):
            out = out + w * noise_like(x, span / (2**b - 1), self.kind)
        return out

    def __call__(self, op: nn.Module, x: torch.Tensor, a: torch.Tensor, bits: list[int]) -> torch.Tensor:
        units = [(name, m) for name, m in op.named_modules() if isinstance(m, ConvBNAct)]
        if not units:  # parameter-free op: nothing to quantize, just its probability
            return a.sum() * op(x)
        p0, pi = self.mixture(a)
        training = op.training
        params = {}
        for name, m in units:
            conv = m.conv
            ref = conv.effective_weight() if hasattr(conv, "effective_weight") else conv.weight
            params[f"{name}.conv.weight" if name else "conv.weight"] = self.perturb(conv.weight, bits, p0, pi, training, ref)

        def pre_hook(_module, args):
            return (self.perturb(args[0], bits, p0, pi, training),)

        with ExitStack() as stack:
            for _, m in units:
                stack.callback(m.conv.register_forward_pre_hook(pre_hook).remove)
            y = functional_call(op, params, (x,))
        return a.sum() * y
