"""Profile the op table on the target: each candidate op configuration compiled INT8 and measured.

An op is measured as the network users get: the op wrapped in its brevitas quantizers, exported
QCDQ, folded to integer kernels by the compile stage (with the target's tuning database applied)
and timed by the measure stage (locally or through the farm). Latency does not depend on trained
weights, so random, calibrated weights are used.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..quantize.convert import calibrate, to_brevitas
from ..quantize.export import export_int8
from ..quantize.recipe import QuantRecipe
from ..space.arch import Arch, SpaceConfig
from ..space.ops import create_op
from ..space.supernet import FrozenNet, _head, _stem
from .table import LatencyTable, op_key

# measure(module, recipe, input_shape) -> median ms
MeasureFn = Callable[[nn.Module, QuantRecipe, tuple[int, ...]], float]


def int8_latency(module: nn.Module, recipe: QuantRecipe, input_shape: tuple[int, ...], target, work: Path,
                 measure_lib: Callable[[str, tuple[int, ...]], float], tuning_dir: str | None = None) -> float:
    """Quantize ``module`` (random calibrated weights), compile for ``target``, return median ms.

    Each call writes a fresh file name: ``dlopen`` returns the already-loaded library for a path
    it has seen, so reusing one name would time the first op over and over.
    """
    from ..compile import compile_onnx

    work = Path(tempfile.mkdtemp(prefix="op-", dir=work))

    torch.manual_seed(0)  # latency does not depend on the weights; fixed ones keep profiles reproducible
    module.eval()
    with torch.no_grad():
        # Untrained activations shrink layer by layer, so a random classifier bias divided by the tiny
        # s_x * s_w overflows int32 at export. Zero biases cost the same time and export cleanly.
        for m in module.modules():
            if isinstance(getattr(m, "bias", None), torch.Tensor):
                m.bias.zero_()
    q = calibrate(to_brevitas(module, recipe), np.random.default_rng(0).standard_normal((64, *input_shape[1:])).astype("float32"))
    onnx_path = export_int8(q, torch.zeros(input_shape), work / "op.onnx")
    res = compile_onnx(onnx_path, target, work / "op.so", int8=True, trials=0, tuning_dir=tuning_dir)
    return measure_lib(res.library, input_shape)


class _Seq(nn.Module):
    def __init__(self, *mods):
        super().__init__()
        self.body = nn.Sequential(*mods)

    def forward(self, x):
        return self.body(x)


def profile_space(space: SpaceConfig, table: LatencyTable, recipe: QuantRecipe, target,
                  measure_lib: Callable[[str, tuple[int, ...]], float], tuning_dir: str | None = None,
                  progress: Callable[[int, int, str], None] | None = None) -> LatencyTable:
    """Measure every op configuration of ``space`` missing from ``table``; return the merged table."""
    todo = table.missing(space)
    need_fixed = table.fixed_ms == 0.0
    total = len(todo) + (2 if need_fixed else 0)
    new: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="edgenas-prof-") as tmp:
        work = Path(tmp)
        for i, (op, bits, cin, cout, stride, hw) in enumerate(todo):
            key = op_key(op, bits, cin, cout, stride, hw)
            if progress:
                progress(i, total, key)
            r = dataclasses.replace(recipe, weight_bits=bits, act_bits=bits)
            new[key] = int8_latency(_Seq(create_op(op, cin, cout, stride)), r, (1, cin, hw, hw), target, work, measure_lib, tuning_dir)
        fixed = None
        if need_fixed:
            if progress:
                progress(len(todo), total, "stem+head")
            final_c = space.positions()[-1][1] if space.positions() else space.stem
            final_hw = space.spatial_sizes()[-1] // space.positions()[-1][2] if space.positions() else space.image_size
            stem = int8_latency(_Seq(_stem(space.in_channels, space.stem)), recipe,
                                (1, space.in_channels, space.image_size, space.image_size), target, work, measure_lib, tuning_dir)
            head = int8_latency(_Seq(*_head(final_c, space.head, space.num_classes)), recipe,
                                (1, final_c, final_hw, final_hw), target, work, measure_lib, tuning_dir)
            fixed = stem + head
    return table.merged(new, fixed)


def measure_arch(arch: Arch, recipe: QuantRecipe, target, measure_lib, tuning_dir: str | None = None) -> float:
    """Whole-model INT8 latency of an architecture (untrained weights: latency does not care)."""
    with tempfile.TemporaryDirectory(prefix="edgenas-arch-") as tmp:
        return int8_latency(FrozenNet(arch), recipe, (1, arch.in_channels, arch.image_size, arch.image_size),
                            target, Path(tmp), measure_lib, tuning_dir)
