"""Candidate ops of the search space, in a registry.

An op factory takes ``(cin, cout, stride)`` and returns an ``nn.Module`` built from
``edgenas.space.units``. ``valid(name, cin, cout, stride)`` says whether an op may stand at a
position (a skip needs equal shapes). Op names follow timm's readable style: ``mb_k3_e6`` is an
inverted-residual (MBConv) block with a 3x3 depthwise kernel and expansion 6.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from ..registry import Registry
from .units import Add, ConvBNAct

OPS: Registry[Callable[[int, int, int], nn.Module]] = Registry("op")
register_op, list_ops, create_op = OPS.register, OPS.names, OPS.create
# Ops that need the input and output shapes to match (no parameters to change them).
SHAPE_PRESERVING: set[str] = set()


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand -> kxk depthwise -> 1x1 project (+ residual when shapes match)."""

    def __init__(self, cin: int, cout: int, stride: int, k: int, e: int, act: str = "relu6"):
        super().__init__()
        mid = cin * e
        layers = [ConvBNAct(cin, mid, 1, act=act)] if e != 1 else []
        layers += [ConvBNAct(mid, mid, k, stride, groups=mid, act=act), ConvBNAct(mid, cout, 1, act=None)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout
        self.add = Add() if self.residual else None

    def forward(self, x):
        y = self.body(x)
        return self.add(x, y) if self.add is not None else y


class FusedMBConv(nn.Module):
    """Fused-MBConv: kxk expand conv -> 1x1 project (+ residual). Dense convs suit INT8 GEMM kernels."""

    def __init__(self, cin: int, cout: int, stride: int, k: int, e: int, act: str = "relu6"):
        super().__init__()
        self.body = nn.Sequential(ConvBNAct(cin, cin * e, k, stride, act=act), ConvBNAct(cin * e, cout, 1, act=None))
        self.residual = stride == 1 and cin == cout
        self.add = Add() if self.residual else None

    def forward(self, x):
        y = self.body(x)
        return self.add(x, y) if self.add is not None else y


class Skip(nn.Identity):
    """Identity: the layer is dropped from the network (depth search)."""


def _mb(k: int, e: int):
    return lambda cin, cout, stride: MBConv(cin, cout, stride, k, e)


def _fmb(k: int, e: int):
    return lambda cin, cout, stride: FusedMBConv(cin, cout, stride, k, e)


for _k in (3, 5):
    for _e in (3, 6):
        register_op(f"mb_k{_k}_e{_e}", _mb(_k, _e))
register_op("fmb_k3_e2", _fmb(3, 2))
register_op("skip", lambda cin, cout, stride: Skip())
SHAPE_PRESERVING.add("skip")


def valid(name: str, cin: int, cout: int, stride: int) -> bool:
    """Whether op ``name`` can stand where the shape goes from ``cin`` to ``cout`` with ``stride``."""
    OPS.get(name)
    return name not in SHAPE_PRESERVING or (cin == cout and stride == 1)
