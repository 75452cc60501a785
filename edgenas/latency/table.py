"""The per-op latency table: every candidate op at every position of the space, measured INT8.

Keys name the op configuration (op, bits, cin, cout, stride, input size), so layers of different
architectures that share a configuration share a measurement, and a table profiled once per
target is reused by every later run (``tuning_logs/<target>/op_latency.json``).
The table's sum is the expected latency the search differentiates through (ProxylessNAS/FBNet).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..records import record
from ..space.arch import Arch, SpaceConfig


def op_key(op: str, bits: int, cin: int, cout: int, stride: int, hw: int) -> str:
    return f"{op}|w{bits}|{cin}->{cout}|s{stride}|{hw}x{hw}"


@record("latency_table")
@dataclass(frozen=True)
class LatencyTable:
    """Measured INT8 latency (ms) per op configuration on one target; ``fixed_ms`` is the stem,
    head and classifier, which every architecture has. ``kernels`` is the
    ``compile.kernel_version.latency_stamp`` of the kernels it was measured with ("" for a table
    older than the stamp): the tuning store keeps a table for later runs only while it matches."""

    target: str
    entries: dict[str, float] = field(default_factory=dict)
    fixed_ms: float = 0.0
    kernels: str = ""

    def layer_costs(self, space: SpaceConfig) -> list[list[float]]:
        """Per searchable layer, the latency of each ``(op, bits)`` candidate (0 for a skip).

        Every candidate must be in the table: a missing op read as 0 ms would look free to the
        search, which would then prefer exactly the ops nobody measured."""
        gaps = self.missing(space)
        if gaps:
            raise ValueError(f"the {self.target} op table lacks {len(gaps)} op(s) of this space, e.g. "
                             f"{op_key(*gaps[0])}: profile the space first (latency.profile.profile_space)")
        out = []
        for i, ((cin, cout, stride), hw) in enumerate(zip(space.positions(), space.spatial_sizes())):
            out.append([self.entries[op_key(op, b, cin, cout, stride, hw)] if op != "skip" else 0.0
                        for op, b in space.candidates(i)])
        return out

    def missing(self, space: SpaceConfig) -> list[tuple[str, int, int, int, int, int]]:
        todo = []
        for i, ((cin, cout, stride), hw) in enumerate(zip(space.positions(), space.spatial_sizes())):
            for op, b in space.candidates(i):
                if op != "skip" and op_key(op, b, cin, cout, stride, hw) not in self.entries:
                    todo.append((op, b, cin, cout, stride, hw))
        return list(dict.fromkeys(todo))

    def arch_sum(self, arch: Arch) -> float:
        """Table-sum prediction for a whole architecture."""
        total, cin, hw = self.fixed_ms, arch.stem, arch.image_size
        for layer in arch.layers:
            if layer.op != "skip":
                total += self.entries[op_key(layer.op, layer.w_bits, cin, layer.cout, layer.stride, hw)]
            cin, hw = layer.cout, (hw + layer.stride - 1) // layer.stride
        return total

    def merged(self, more: dict[str, float], fixed_ms: float | None = None) -> "LatencyTable":
        return replace(self, entries={**self.entries, **more}, fixed_ms=self.fixed_ms if fixed_ms is None else fixed_ms)
