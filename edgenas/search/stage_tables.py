"""SpaceEvo's per-stage look-up tables: (accuracy proxy, INT8 latency on the target) per sub-stage.

Wang, Zhang, Xu et al., "SpaceEvo: Hardware-Friendly Search Space Design for Efficient INT8
Inference", ICCV 2023 (arXiv 2303.08308; code ``microsoft/Moonlit/SpaceEvo``,
``eval_block_kd.py`` writes ``data/block_lut/<space>/stage{i}_{block}_{window}.csv``).

One row per (stage, block type, op variant, width): the stage built from that op at that width.

* Accuracy proxy: block-wise knowledge distillation, cheaper than SpaceEvo's (5 FP32 epochs + 1
  LSQ+ epoch of an elastic supernet per stage against an INT8 EfficientNet-B5). Our teacher is the
  base space with ``mb_k3_e6`` in every layer, trained for ``teacher_epochs`` on the search data;
  each student stage takes the teacher's previous-stage output as input (as in SpaceEvo), ends in a
  1x1 adapter to the teacher's width (widths differ), trains ``kd_epochs`` to reproduce the
  teacher's stage output, and is scored by NSR on the validation split: per-channel MSE divided by
  the *teacher's* per-channel variance, averaged over channels (DONNA's normalisation; SpaceEvo's
  code divides by the student's variance, which a collapsing student can game).
* Latency: each layer of the stage compiled INT8 and measured on the target through
  ``edgenas.latency.profile.profile_space`` — the same per-op table the search uses, never a
  copied one. A stage's latency is the sum of its layers (depth fixed by the base space).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..data import DataSplits
from ..latency.table import LatencyTable, op_key
from ..records import record
from ..space.arch import SpaceConfig, StageConfig, arch_from_choices
from ..space.ops import BLOCK_TYPES, create_op


@record("stage_row")
@dataclass(frozen=True)
class StageRow:
    stage: int
    block: str
    op: str
    width: int
    nsr: float
    latency_ms: float


@record("stage_tables")
@dataclass(frozen=True)
class StageTables:
    rows: tuple[StageRow, ...]
    fixed_ms: float            # stem + head of the base space (every subnet pays it)
    teacher_acc: float


def stage_geometry(base: SpaceConfig) -> list[tuple[int, int, int, int]]:
    """Per stage ``(cin, depth, stride, hw_in)`` with the teacher's (base space's) widths."""
    out, cin, hw = [], base.stem, base.image_size
    for st in base.stages:
        out.append((cin, st.depth, st.stride, hw))
        cin, hw = st.channels, (hw + st.stride - 1) // st.stride
    return out


def _stage_net(op: str, cin: int, width: int, depth: int, stride: int, cout_teacher: int | None) -> nn.Sequential:
    layers = [create_op(op, cin, width, stride)] + [create_op(op, width, width, 1) for _ in range(depth - 1)]
    if cout_teacher is not None:
        layers.append(nn.Conv2d(width, cout_teacher, 1))
    return nn.Sequential(*layers)


def nsr(student: torch.Tensor, teacher: torch.Tensor, teacher_var: torch.Tensor) -> torch.Tensor:
    """Noise-to-signal ratio: mean over channels of MSE_c / Var_teacher_c."""
    mse = ((student - teacher) ** 2).mean(dim=(0, 2, 3))
    return (mse / teacher_var.clamp_min(1e-8)).mean()


@torch.no_grad()
def _features(teacher: nn.Module, x, bounds: list[int], device: str = "cpu") -> list[torch.Tensor]:
    """Teacher activations at every stage boundary (input of stage 0, ..., output of the last),
    on ``device`` (the proxies train there)."""
    teacher.to(device).eval()
    h = teacher.stem(torch.from_numpy(np.asarray(x)).to(device))
    feats = [h]
    for i, layer in enumerate(teacher.layers):
        h = layer(h)
        if i + 1 in bounds:
            feats.append(h)
    return feats


def _kd_proxy(op: str, geom, width: int, cout: int, xin, yout, vin, vout, epochs: int, seed: int) -> float:
    """One block-wise KD proxy score, trained on the device the teacher's features are on."""
    cin, depth, stride, _ = geom
    torch.manual_seed(seed)
    student = _stage_net(op, cin, width, depth, stride, cout).to(xin.device)
    var = yout.var(dim=(0, 2, 3))
    opt = torch.optim.Adam(student.parameters(), lr=3e-3)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        student.train()
        idx = rng.permutation(len(xin))
        for i in range(0, len(idx), 64):
            j = torch.from_numpy(idx[i : i + 64]).to(xin.device)
            opt.zero_grad()
            nsr(student(xin[j]), yout[j], var).backward()
            opt.step()
    student.eval()
    with torch.no_grad():
        return float(nsr(student(vin), vout, var))


def build_stage_tables(base: SpaceConfig, widths: tuple[tuple[int, ...], ...], blocks: tuple[str, ...], variants: int,
                       data: DataSplits, table: LatencyTable, latency_of: Callable[[SpaceConfig, LatencyTable], LatencyTable],
                       teacher_epochs: int = 8, kd_epochs: int = 3, kd_samples: int = 512, seed: int = 0,
                       progress: Callable[[str], None] | None = None, compute=None) -> tuple[StageTables, LatencyTable]:
    """Rows for every (stage, block, variant, width); returns the tables and the grown latency table.

    ``latency_of(space, table)`` profiles the missing ops of ``space`` on the target (normally
    ``profile_space`` bound to a recipe, target and measure function); ``table`` must already hold
    the base space's fixed (stem + head) cost. The teacher trains on ``compute`` (a
    ``compute.Compute``: its device and ranks), the proxies on its device.
    """
    from ..compute import CPU
    from ..train import evaluate, fit

    compute = compute or CPU
    from ..space.supernet import FrozenNet

    if table.fixed_ms == 0.0:
        raise ValueError("profile the base space first: the table has no stem + head cost (fixed_ms)")
    say = progress or (lambda _m: None)
    torch.manual_seed(seed)
    teacher_arch = arch_from_choices(base, [("mb_k3_e6", 8)] * len(base.positions()))
    teacher = FrozenNet(teacher_arch)
    say("training the KD teacher")
    fit(teacher, data.train, teacher_epochs, 3e-3, seed, compute=compute)
    teacher_acc = evaluate(teacher, *data.val)
    bounds = list(np.cumsum([st.depth for st in base.stages]))
    tr = _features(teacher, data.train[0][:kd_samples], bounds, compute.device)
    va = _features(teacher, data.val[0], bounds, compute.device)
    geoms = stage_geometry(base)
    rows = []
    for s, (geom, ws) in enumerate(zip(geoms, widths, strict=True)):
        cin, depth, stride, hw = geom
        for block in blocks:
            ops = BLOCK_TYPES[block][:variants]
            for w in ws:
                mini = SpaceConfig(image_size=hw, in_channels=1, stem=cin, head=0,
                                   stages=(StageConfig(w, depth, stride, ops=ops),), bits=(8,))
                table = latency_of(mini, table)
                for op in ops:
                    say(f"stage {s} {op} c{w}")
                    lat = table.entries[op_key(op, 8, cin, w, stride, hw)]
                    hw2 = (hw + stride - 1) // stride
                    lat += (depth - 1) * table.entries[op_key(op, 8, w, w, 1, hw2)] if depth > 1 else 0.0
                    score = _kd_proxy(op, geom, w, base.stages[s].channels, tr[s], tr[s + 1], va[s], va[s + 1],
                                      kd_epochs, seed + 1000 * s + w)
                    rows.append(StageRow(s, block, op, w, score, lat))
    return StageTables(tuple(rows), table.fixed_ms, teacher_acc), table


def default_widths(base: SpaceConfig, n: int = 3, step: int = 8) -> tuple[tuple[int, ...], ...]:
    """INT8-friendly width lists around each base width: multiples of ``step``, ``n`` per stage."""
    out = []
    for st in base.stages:
        lo = max(step, (st.channels // step - (n - 1) // 2) * step)
        out.append(tuple(lo + i * step for i in range(n)))
    return tuple(out)

