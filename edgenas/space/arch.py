"""Architecture records and their readable string form.

An ``Arch`` is everything needed to build a network, with no search state: input size, stem,
one ``LayerChoice`` per searchable layer, head and classes. Its string form reads like timm's
(``r16_i1_stem16|mb_k3_e6_c24_s2_w8a8|skip_c24_s1_w8a8|head64_n10``) and parses back exactly,
so an architecture can be pasted into a command line or a bug report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from ..errors import UsageError
from ..records import record


@record("stage")
@dataclass(frozen=True)
class StageConfig:
    channels: int
    depth: int
    stride: int
    ops: tuple[str, ...] = ()        # this stage's candidate ops (SpaceEvo's block type); () = the space's ops


@record("space")
@dataclass(frozen=True)
class SpaceConfig:
    """The macro-architecture and the candidate ops of every searchable layer."""

    image_size: int = 16
    in_channels: int = 1
    num_classes: int = 10
    stem: int = 16
    stages: tuple[StageConfig, ...] = (StageConfig(16, 1, 1), StageConfig(24, 2, 2), StageConfig(32, 2, 2))
    head: int = 64
    ops: tuple[str, ...] = ("mb_k3_e3", "mb_k3_e6", "mb_k5_e3", "mb_k5_e6", "skip")
    bits: tuple[int, ...] = (8,)                 # per-layer bit-width choices (QuantNAS), e.g. (4, 8)
    sparse_levels: tuple[float, ...] = ()        # DASS: add <op>_sp<level> beside each conv op, e.g. (0.5,)
    adq: bool = False                            # QuantNAS ADQ wrapper around every op during search

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """NCHW of one input to every architecture of the space."""
        return (1, self.in_channels, self.image_size, self.image_size)

    def positions(self) -> list[tuple[int, int, int]]:
        """``(cin, cout, stride)`` of every searchable layer, in order."""
        out, cin = [], self.stem
        for st in self.stages:
            for i in range(st.depth):
                out.append((cin, st.channels, st.stride if i == 0 else 1))
                cin = st.channels
        return out

    def spatial_sizes(self) -> list[int]:
        """Input height/width seen by every searchable layer."""
        out, hw = [], self.image_size
        for _, _, stride in self.positions():
            out.append(hw)
            hw = (hw + stride - 1) // stride
        return out

    def layer_ops(self, index: int) -> list[str]:
        """Op names offered at searchable layer ``index``: its stage's ops (or the space's), each
        followed by its sparse variants at ``sparse_levels``."""
        from .ops import sparse_variant

        i = index
        for st in self.stages:
            if i < st.depth:
                break
            i -= st.depth
        out = []
        for op in st.ops or self.ops:
            out.append(op)
            out += [v for v in (sparse_variant(op, lv) for lv in self.sparse_levels) if v]
        return list(dict.fromkeys(out))

    def candidates(self, index: int) -> list[tuple[str, int]]:
        """``(op, bits)`` choices valid at searchable layer ``index``."""
        from .ops import valid

        cin, cout, stride = self.positions()[index]
        return [(op, b) for op in self.layer_ops(index) if valid(op, cin, cout, stride) for b in self.bits]


@record("layer_choice")
@dataclass(frozen=True)
class LayerChoice:
    op: str
    cout: int
    stride: int
    w_bits: int = 8
    a_bits: int = 8

    def __str__(self) -> str:
        return f"{self.op}_c{self.cout}_s{self.stride}_w{self.w_bits}a{self.a_bits}"


_LAYER = re.compile(r"^(?P<op>[a-z][a-z0-9_]*?)_c(?P<c>\d+)_s(?P<s>\d+)(?:_w(?P<w>\d+)a(?P<a>\d+))?$")
_HEAD = re.compile(r"^r(?P<r>\d+)_i(?P<i>\d+)_stem(?P<stem>\d+)$")
_TAIL = re.compile(r"^head(?P<h>\d+)_n(?P<n>\d+)$")


@record("arch")
@dataclass(frozen=True)
class Arch:
    image_size: int
    in_channels: int
    stem: int
    layers: tuple[LayerChoice, ...]
    head: int
    num_classes: int

    def __str__(self) -> str:
        mid = "|".join(str(layer) for layer in self.layers)
        return f"r{self.image_size}_i{self.in_channels}_stem{self.stem}|{mid}|head{self.head}_n{self.num_classes}"

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """NCHW of one input (libraries are compiled for batch 1)."""
        return (1, self.in_channels, self.image_size, self.image_size)

    @classmethod
    def parse(cls, text: str) -> "Arch":
        parts = text.strip().split("|")
        if len(parts) < 2:
            raise UsageError(f"not an architecture string: {text!r}")
        head, tail = _HEAD.match(parts[0]), _TAIL.match(parts[-1])
        if not head or not tail:
            raise UsageError(f"architecture string must start with r<size>_i<ch>_stem<c> and end with head<c>_n<classes>: {text!r}")
        layers = []
        for tok in parts[1:-1]:
            m = _LAYER.match(tok)
            if not m:
                raise UsageError(f"bad layer token {tok!r} (expected <op>_c<ch>_s<stride>[_w<b>a<b>])")
            layers.append(LayerChoice(m["op"], int(m["c"]), int(m["s"]), int(m["w"] or 8), int(m["a"] or 8)))
        arch = cls(int(head["r"]), int(head["i"]), int(head["stem"]), tuple(layers), int(tail["h"]), int(tail["n"]))
        arch.validate()
        return arch

    def validate(self) -> None:
        from .ops import OPS, valid

        cin = self.stem
        for layer in self.layers:
            if layer.op not in OPS:
                OPS.get(layer.op)  # raises with the list of valid ops
            if not valid(layer.op, cin, layer.cout, layer.stride):
                raise UsageError(f"op {layer.op!r} cannot map {cin} to {layer.cout} channels with stride {layer.stride}")
            cin = layer.cout
        if min(self.image_size, self.in_channels, self.stem, self.num_classes) < 1:
            raise UsageError("architecture sizes must be positive")

    def with_layers(self, layers) -> "Arch":
        return replace(self, layers=tuple(layers))

    @property
    def depth(self) -> int:
        return sum(1 for layer in self.layers if layer.op != "skip")


def arch_from_choices(space: SpaceConfig, choices: list[tuple[str, int]]) -> Arch:
    """Build an ``Arch`` from one ``(op, bits)`` choice per searchable layer of ``space``."""
    layers = tuple(
        LayerChoice(op, cout, stride, bits, bits) for (op, bits), (_, cout, stride) in zip(choices, space.positions(), strict=True)
    )
    return Arch(space.image_size, space.in_channels, space.stem, layers, space.head, space.num_classes)
