"""Measured whole networks and the per-layer features the latency predictor learns from.

Why per-layer features: the op-table sum misses what happens *between* ops — each op in the
table was measured alone, so it pays its own quantize/dequantize of the boundary tensor and its
own VM call, while inside a network neighbouring ops fuse and share them. Those effects scale
with countable things: the number of layers, the boundary activations, the MACs, the residual
adds. Every feature here is a *sum over layers*, so a linear model on them is itself a per-op
table (``Predictor.corrected_table``) the differentiable search can use as is.

The dataset of measured archs is a versioned record kept per target
in the target's tuning store (``TuningStore.latency_points``), so later runs refit on everything
measured before.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace
from functools import lru_cache

from ..records import record
from ..space.arch import Arch
from .table import LatencyTable, op_key

FEATURES = ("layers", "macs_m", "act_k", "residuals")
_KEY = re.compile(r"^(?P<op>[^|]+)\|w(?P<bits>\d+)\|(?P<cin>\d+)->(?P<cout>\d+)\|s(?P<s>\d+)\|(?P<hw>\d+)x\d+$")


def layer_keys(arch: Arch) -> list[str]:
    """The op-table key of every non-skip layer (the same walk as ``LatencyTable.arch_sum``)."""
    keys, cin, hw = [], arch.stem, arch.image_size
    for layer in arch.layers:
        if layer.op != "skip":
            keys.append(op_key(layer.op, layer.w_bits, cin, layer.cout, layer.stride, hw))
        cin, hw = layer.cout, (hw + layer.stride - 1) // layer.stride
    return keys


@lru_cache(maxsize=4096)
def op_features(key: str) -> tuple[float, ...]:
    """``FEATURES`` of one op configuration: MACs from ``space.cost`` (counted on the real module),
    output activations, and whether the op ends in a residual add."""
    from ..space.cost import op_cost
    from ..space.ops import create_op

    m = _KEY.match(key)
    if m is None:
        raise ValueError(f"not an op-table key: {key!r}")
    cin, cout, stride, hw = (int(m[g]) for g in ("cin", "cout", "s", "hw"))
    macs = op_cost(m["op"], cin, cout, stride, hw).macs
    out_hw = (hw + stride - 1) // stride
    residual = getattr(create_op(m["op"], cin, cout, stride), "add", None) is not None
    return (1.0, macs / 1e6, cout * out_hw * out_hw / 1e3, float(residual))


def arch_features(arch: Arch) -> dict[str, float]:
    """``FEATURES`` summed over the layers of ``arch`` (stem and head are common to all archs)."""
    totals = [0.0] * len(FEATURES)
    for key in layer_keys(arch):
        totals = [a + b for a, b in zip(totals, op_features(key))]
    return dict(zip(FEATURES, totals))


@record("latency_point")
@dataclass(frozen=True)
class LatencyPoint:
    arch: str              # Arch string form
    measured_ms: float
    where: str = ""        # device id / tracker key it was measured on
    round: int = 0
    measured_at: float = 0.0


@record("latency_dataset")
@dataclass(frozen=True)
class LatencyDataset:
    target: str
    points: tuple[LatencyPoint, ...] = field(default_factory=tuple)

    def add(self, *points: LatencyPoint) -> "LatencyDataset":
        stamped = tuple(p if p.measured_at else replace(p, measured_at=time.time()) for p in points)
        return replace(self, points=self.points + stamped)

    def archs(self) -> list[Arch]:
        return [Arch.parse(p.arch) for p in self.points]

    def measured(self) -> list[float]:
        return [p.measured_ms for p in self.points]


def table_covers(table: LatencyTable, arch: Arch) -> bool:
    return all(k in table.entries for k in layer_keys(arch))
