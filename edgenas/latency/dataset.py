"""Measured whole networks and the per-layer features the latency predictor learns from.

Why per-op-class costs: the op table was profiled at one moment, op by op; a whole network is
measured later, at another load, and the share of each op class in it changes (depthwise ops
are memory-bound, fused 3x3 convs compute-bound), so one global scale cannot correct them all.
``cost:<op>`` is the table cost of the layers of that op class: a coefficient on it is a
per-class scale (docs/latency.md).

Why per-layer counts: the op-table sum misses what happens *between* ops — each op in the
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


def op_class(key: str) -> str:
    """The op of an op-table key (``mb_k3_e6|w8|16->24|s2|16x16`` -> ``mb_k3_e6``)."""
    return key.split("|", 1)[0]


def key_features(key: str, cost_ms: float) -> dict[str, float]:
    """The features one layer contributes: its ``FEATURES`` counts and its cost under its class."""
    return {**dict(zip(FEATURES, op_features(key))), f"cost:{op_class(key)}": cost_ms}


def arch_features(arch: Arch, table: LatencyTable | None = None) -> dict[str, float]:
    """Features summed over the layers of ``arch`` (stem and head are common to all archs): the
    ``FEATURES`` counts, and with ``table`` the table cost per op class (``cost:<op>``)."""
    totals = dict.fromkeys(FEATURES, 0.0)
    for key in layer_keys(arch):
        for name, v in key_features(key, table.entries[key] if table is not None else 0.0).items():
            if table is not None or name in FEATURES:
                totals[name] = totals.get(name, 0.0) + v
    return totals


@record("latency_point")
@dataclass(frozen=True)
class LatencyPoint:
    arch: str              # Arch string form
    measured_ms: float
    where: str = ""        # device id / tracker key it was measured on
    round: int = 0
    measured_at: float = 0.0
    ratio: float = 0.0     # measured / the reference library in the same windows (0: not interleaved)
    reference: str = ""    # the reference's Arch string form


@record("latency_dataset")
@dataclass(frozen=True)
class LatencyDataset:
    """Whole networks measured on one target; ``kernels`` as for ``LatencyTable``: the points
    are reused only by builds on the same kernels."""

    target: str
    points: tuple[LatencyPoint, ...] = field(default_factory=tuple)
    kernels: str = ""

    def add(self, *points: LatencyPoint) -> "LatencyDataset":
        stamped = tuple(p if p.measured_at else replace(p, measured_at=time.time()) for p in points)
        return replace(self, points=self.points + stamped)

    def archs(self) -> list[Arch]:
        return [Arch.parse(p.arch) for p in self.points]

    def measured(self) -> list[float]:
        return [p.measured_ms for p in self.points]


def table_covers(table: LatencyTable, arch: Arch) -> bool:
    return all(k in table.entries for k in layer_keys(arch))
