"""Profile the op table on the target: each candidate op configuration compiled INT8 and measured.

An op is measured as the network users get: the op wrapped in its brevitas quantizers, exported
QCDQ, folded to integer kernels by the compile stage (with the target's tuning database applied)
and timed by the measure stage (locally or through the farm). Latency does not depend on trained
weights, so random, calibrated weights are used.

Every function here that is given the target caps the recipe at the target's weight width
(``quantize.recipe.for_target``) before it builds anything, so an op is timed at the width the
final model is trained at (an 8-bit op on x86-avx2 is built with 7-bit weights: the compiler may
choose a denser kernel for it). The table keys keep the searched width (``w8``): the key names the
search's choice, the cap is the target's, and a target's table is only ever read for that target.
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
from ..quantize.recipe import QuantRecipe, for_target
from ..space.arch import Arch, SpaceConfig
from ..space.ops import create_op
from ..space.supernet import FrozenNet, _head, _stem
from .table import LatencyTable, op_key

# measure(module, recipe, input_shape) -> median ms
MeasureFn = Callable[[nn.Module, QuantRecipe, tuple[int, ...]], float]


def export_op(module: nn.Module, recipe: QuantRecipe, input_shape: tuple[int, ...], work: Path) -> Path:
    """``module`` quantized with random calibrated weights and exported QCDQ into a fresh directory.

    A fresh name per call matters: ``dlopen`` returns the already-loaded library for a path it has
    seen, so reusing one name downstream would time the first op over and over.
    """
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
    return export_int8(q, torch.zeros(input_shape), work / "op.onnx")


def int8_latency(module: nn.Module, recipe: QuantRecipe, input_shape: tuple[int, ...], target, work: Path,
                 measure_lib: Callable[[str, tuple[int, ...]], float], tuning_dir: str | None = None):
    """Quantize ``module`` (random calibrated weights), compile for ``target``, return what
    ``measure_lib`` returns for the library (the median ms when profiling). The weights are
    capped at the target's width (``for_target``)."""
    from ..compile import compile_onnx

    onnx_path = export_op(module, for_target(recipe, target), input_shape, work)
    res = compile_onnx(onnx_path, target, onnx_path.with_suffix(".so"), int8=True, trials=0, tuning_dir=tuning_dir)
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
    """Measure every op configuration of ``space`` missing from ``table``; return the merged table.
    The stem and head are measured once as the table's fixed cost."""
    missing = {op_key(*m) for m in table.missing(space)}
    need_fixed = table.fixed_ms == 0.0
    todo = [it for it in space_modules(space, recipe) if it[0] in missing or (need_fixed and it[0] in ("stem", "head"))]
    new: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="edgenas-prof-") as tmp:
        for i, (key, module, r, shape) in enumerate(todo):
            if progress:
                progress(i, len(todo), key)
            new[key] = int8_latency(module, r, shape, target, Path(tmp), measure_lib, tuning_dir)
    fixed = new.pop("stem") + new.pop("head") if need_fixed else None
    return table.merged(new, fixed)


def compile_arch(arch: Arch, recipe: QuantRecipe, target, library: Path, tuning_dir: str | None = None) -> Path:
    """The whole-model INT8 library of ``arch`` with untrained weights, written to ``library``
    (the feedback loop's reference library: docs/measurement.md)."""
    from ..compile import compile_onnx

    with tempfile.TemporaryDirectory(prefix="edgenas-arch-") as tmp:
        onnx_path = export_op(FrozenNet(arch), for_target(recipe, target), arch.input_shape, Path(tmp))
        return Path(compile_onnx(onnx_path, target, library, int8=True, trials=0, tuning_dir=tuning_dir).library)


def measure_arch(arch: Arch, recipe: QuantRecipe, target, measure_lib, tuning_dir: str | None = None):
    """Whole-model INT8 latency of an architecture (untrained weights: latency does not care):
    whatever ``measure_lib(library, input_shape)`` returns (a median, or the whole measurement)."""
    with tempfile.TemporaryDirectory(prefix="edgenas-arch-") as tmp:
        return int8_latency(FrozenNet(arch), recipe, arch.input_shape,
                            target, Path(tmp), measure_lib, tuning_dir)


def space_modules(space: SpaceConfig, recipe: QuantRecipe):
    """Every op configuration of ``space`` (and its stem and head) as ``(key, module, recipe, shape)``.
    Each op's recipe is ``recipe`` at the key's widths; ``replace`` keeps ``recipe``'s weight cap
    (``max_weight_bits``), so a ``w8`` key of a recipe capped at 7 is built at 7."""
    for op, bits, cin, cout, stride, hw in LatencyTable("").missing(space):
        yield (op_key(op, bits, cin, cout, stride, hw), _Seq(create_op(op, cin, cout, stride)),
               dataclasses.replace(recipe, weight_bits=bits, act_bits=bits), (1, cin, hw, hw))
    pos = space.positions()
    final_c = pos[-1][1] if pos else space.stem
    final_hw = space.spatial_sizes()[-1] // pos[-1][2] if pos else space.image_size
    yield "stem", _Seq(_stem(space.in_channels, space.stem)), recipe, space.input_shape
    yield "head", _Seq(*_head(final_c, space.head, space.num_classes)), recipe, (1, final_c, final_hw, final_hw)


def tune_space(space: SpaceConfig, recipe: QuantRecipe, target, trials_per_op: int, tuning_dir: str | None = None,
               progress: Callable[[int, int, str], None] | None = None) -> int:
    """Tune every op configuration of the space into the target's database (docs/architecture.md §3: tune the
    space, not the model). Tasks that already have records are skipped, so this is resumable and
    incremental; any architecture of the space then compiles with database hits only. Returns the
    number of new trials."""
    from ..compile import compile_onnx

    items = list(space_modules(space, for_target(recipe, target)))
    trials = 0
    with tempfile.TemporaryDirectory(prefix="edgenas-tune-") as tmp:
        for i, (key, module, r, shape) in enumerate(items):
            if progress:
                progress(i, len(items), key)
            onnx_path = export_op(module, r, shape, Path(tmp))
            trials += compile_onnx(onnx_path, target, onnx_path.with_suffix(".so"), int8=True, trials=trials_per_op,
                                   tuning_dir=tuning_dir).trials
    return trials
