"""Candidate ops of the search space, in a registry.

An op factory takes ``(cin, cout, stride)`` and returns an ``nn.Module`` built from
``edgenas.space.units`` (or ``edgenas.space.sparse.SparseConvBNAct``, which has its own brevitas
converter), so every op quantizes, exports and compiles. Names follow timm's readable style:

* ``mb_k3_e6``  inverted residual (MBConv, ReLU6), 3x3 depthwise, expansion 6
* ``mbh_k3_e6`` the same with hard-swish (MobileNetV3's activation; costs a float fallback in INT8)
* ``fmb_k3_e2`` fused-MBConv (dense kxk expand), ``dw_k3`` depthwise-separable (MBConv with e=1)
* ``rb_k3``     ResNet bottleneck (1x1 reduce to cout/2, kxk, 1x1 expand, projection shortcut)
* ``skip``      identity (depth search; parameter-free)
* ``<op>_sp50`` DASS sparse variant of a conv op: every conv keeps the top 50 % of its weights
  (levels 50/75/90 registered; the number is the sparsity, DASS's k = 1 - level/100).

``BLOCK_TYPES`` groups the ops into the block families SpaceEvo evolves over.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

from torch import nn

from ..registry import Registry
from .units import Add, ConvBNAct

OPS: Registry[Callable[[int, int, int], nn.Module]] = Registry("op")
register_op, list_ops, create_op = OPS.register, OPS.names, OPS.create
# Ops that need the input and output shapes to match (no parameters to change them).
SHAPE_PRESERVING: set[str] = set()
# Ops with no weights: DARTS's collapse (skip domination) is measured as their share.
PARAMETER_FREE: set[str] = set()
SPARSE_LEVELS = (50, 75, 90)
BLOCK_TYPES: dict[str, tuple[str, ...]] = {
    "mb": ("mb_k3_e3", "mb_k3_e6", "mb_k5_e3", "mb_k5_e6"),
    "mbh": ("mbh_k3_e3", "mbh_k3_e6", "mbh_k5_e3", "mbh_k5_e6"),
    "fmb": ("fmb_k3_e2", "fmb_k3_e4"),
    "dw": ("dw_k3", "dw_k5"),
    "rb": ("rb_k3", "rb_k5"),
}


class _Block(nn.Module):
    """``body`` (+ residual add when the shapes match). ADQ wraps ``body`` and ``shortcut``."""

    def __init__(self, body: nn.Module, residual: bool, shortcut: nn.Module | None = None):
        super().__init__()
        self.body = body
        self.residual = residual
        self.shortcut = shortcut
        self.add = Add() if residual or shortcut is not None else None

    def forward(self, x):
        y = self.body(x)
        if self.add is None:
            return y
        return self.add(self.shortcut(x) if self.shortcut is not None else x, y)


class MBConv(_Block):
    """Inverted residual: 1x1 expand -> kxk depthwise -> 1x1 project (+ residual when shapes match)."""

    def __init__(self, cin: int, cout: int, stride: int, k: int, e: int, act: str = "relu6", unit=ConvBNAct):
        mid = cin * e
        layers = [unit(cin, mid, 1, act=act)] if e != 1 else []
        layers += [unit(mid, mid, k, stride, groups=mid, act=act), unit(mid, cout, 1, act=None)]
        super().__init__(nn.Sequential(*layers), stride == 1 and cin == cout)


class FusedMBConv(_Block):
    """Fused-MBConv: kxk expand conv -> 1x1 project (+ residual). Dense convs suit INT8 GEMM kernels."""

    def __init__(self, cin: int, cout: int, stride: int, k: int, e: int, act: str = "relu6", unit=ConvBNAct):
        body = nn.Sequential(unit(cin, cin * e, k, stride, act=act), unit(cin * e, cout, 1, act=None))
        super().__init__(body, stride == 1 and cin == cout)


class Bottleneck(_Block):
    """ResNet bottleneck: 1x1 reduce -> kxk -> 1x1 expand, identity or 1x1 projection shortcut."""

    def __init__(self, cin: int, cout: int, stride: int, k: int, unit=ConvBNAct):
        mid = max(8, cout // 2)
        body = nn.Sequential(unit(cin, mid, 1, act="relu"), unit(mid, mid, k, stride, act="relu"), unit(mid, cout, 1, act=None))
        same = stride == 1 and cin == cout
        super().__init__(body, same, None if same else unit(cin, cout, 1, stride, act=None))


class Skip(nn.Identity):
    """Identity: the layer is dropped from the network (depth search)."""


def _conv_ops() -> dict[str, Callable]:
    """Factories of the conv ops, each taking the unit class so sparse variants reuse them."""
    out: dict[str, Callable] = {}
    for k in (3, 5):
        for e in (3, 6):
            out[f"mb_k{k}_e{e}"] = partial(MBConv, k=k, e=e)
            out[f"mbh_k{k}_e{e}"] = partial(MBConv, k=k, e=e, act="hswish")
        out[f"dw_k{k}"] = partial(MBConv, k=k, e=1)
        out[f"rb_k{k}"] = partial(Bottleneck, k=k)
    for e in (2, 4):
        out[f"fmb_k3_e{e}"] = partial(FusedMBConv, k=3, e=e)
    return out


def _register_all() -> None:
    from .sparse import SparseConvBNAct

    for name, factory in _conv_ops().items():
        register_op(name, factory)
        for level in SPARSE_LEVELS:
            unit = partial(SparseConvBNAct, keep=1 - level / 100)
            register_op(sparse_name(name, level), partial(factory, unit=unit))
    register_op("skip", lambda cin, cout, stride: Skip())
    SHAPE_PRESERVING.add("skip")
    PARAMETER_FREE.add("skip")


def sparse_name(op: str, level: int) -> str:
    return f"{op}_sp{level}"


def sparse_variant(op: str, sparsity: float) -> str | None:
    """Name of the registered sparse variant of ``op`` at ``sparsity`` (0.5 -> ``op_sp50``), or None."""
    name = sparse_name(op, round(sparsity * 100))
    return name if name in OPS else None


def keep_fraction(op: str) -> float:
    """Fraction of weights a (possibly sparse) op keeps: 1.0 for dense ops."""
    head, _, level = op.rpartition("_sp")
    return 1 - int(level) / 100 if head and level.isdigit() else 1.0


def valid(name: str, cin: int, cout: int, stride: int) -> bool:
    """Whether op ``name`` can stand where the shape goes from ``cin`` to ``cout`` with ``stride``."""
    OPS.get(name)
    return name not in SHAPE_PRESERVING or (cin == cout and stride == 1)


_register_all()
