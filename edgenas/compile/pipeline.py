"""The compile pipeline as named phases, with every per-target difference in ONE table.

DESIGN.md §4.4: Relax's own ``relax/pipeline.py`` repeats a ``target.kind`` if-chain in five
functions; here a target's (device kind, host arch) selects one ``Backend`` row, and the phases
read their passes, build environment and exporter from it.

Phases, in order (``compile_onnx`` runs them):

1. ``import``   ONNX -> high-level Relax (``frontend.import_onnx``; nothing folded yet, so the
                int8 rewrite still sees ``relax.quantize``/``dequantize`` around constant weights)
2. ``int8``     ``qdq_rewrite.fold_qdq`` (Q/DQ -> integer conv/dense + requantize)
3. ``fuse``     inference decomposition, legalize to TIR, fold constants, fuse. The result is
                what MetaSchedule extracts tasks from and what the database is applied to; both
                must see the same fused PrimFuncs or records never match.
4. ``schedule`` apply the tuning DB, then the backend's fallback schedules for what it missed
5. ``lower``    Relax VM lowering and finalisation (the stock per-kind pass lists)
6. ``export``   ``export_library`` with the backend's compiler (cross for aarch64 hosts)
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, ContextManager

from ..errors import UsageError


def _no_env(_spec) -> ContextManager:
    return contextlib.nullcontext()


def _cuda_env(spec) -> ContextManager:
    from .build import cuda_fatbin_env

    return cuda_fatbin_env(spec)


def _cpu_fallback(_tgt) -> list:
    # Untuned CPU kernels stay as naive loops: dlight's CPU rules only cover GEMV/reduction and
    # MetaSchedule records are the way to speed (tuning_logs/<target>/).
    return []


def _gpu_fallback(_tgt) -> list:
    # Unscheduled GPU kernels do not even compile (no thread binding): DLight's GPU rules give
    # every kernel a valid, reasonable schedule (the default Relax CUDA pipeline does the same).
    from tvm.s_tir import dlight as dl

    return [dl.ApplyDefaultSchedule(dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.Reduction(),
                                    dl.gpu.GeneralReduction(), dl.gpu.Fallback())]


def _host_compiler(_spec):
    return None  # export_library's default: the host g++


def _cross_compiler(spec):
    from tvm.support import cc

    return cc.cross_compiler(spec.cross_compiler)


def _stock_lowering(relax_backend: str) -> Callable[[object], list]:
    def passes(tgt) -> list:
        # Import the pipeline module itself: cpu_generic/__init__ does not re-export
        # dataflow_lower_passes, so relax.pipeline.dataflow_lower_passes fails for llvm in 0.27.
        import importlib

        stock = importlib.import_module(f"tvm.relax.backend.{relax_backend}.pipeline")
        return stock.dataflow_lower_passes(tgt) + stock.finalize_passes(tgt)

    return passes


@dataclass(frozen=True)
class Backend:
    """How one (device kind, host arch) pair is scheduled, built and exported."""

    fallback_schedule: Callable[[object], list]   # tvm Target -> passes after the DB is applied
    lowering: Callable[[object], list]            # tvm Target -> dataflow lowering + finalisation
    build_env: Callable[[object], ContextManager]  # TargetSpec -> env around tvm.compile
    fcompile: Callable[[object], object]           # TargetSpec -> export_library's fcompile
    tunable_here: bool                             # may MetaSchedule measure it on this host?


BACKENDS: dict[tuple[str, str], Backend] = {
    ("llvm", "x86_64"): Backend(_cpu_fallback, _stock_lowering("cpu_generic"), _no_env, _host_compiler, True),
    ("llvm", "aarch64"): Backend(_cpu_fallback, _stock_lowering("cpu_generic"), _no_env, _cross_compiler, False),
    ("cuda", "x86_64"): Backend(_gpu_fallback, _stock_lowering("cuda"), _cuda_env, _host_compiler, False),
    ("cuda", "aarch64"): Backend(_gpu_fallback, _stock_lowering("cuda"), _cuda_env, _cross_compiler, False),
}


def backend(spec) -> Backend:
    key = (spec.tvm_target["kind"], spec.arch)
    if key not in BACKENDS:
        raise UsageError(f"target {spec.name!r}: no compile backend for kind={key[0]} arch={key[1]}")
    return BACKENDS[key]


def fuse(mod, spec):
    """Phase 3: the fused module that tuning and the database both see (needs the target)."""
    import tvm
    from tvm import relax

    tgt = spec.tvm()
    seq = tvm.transform.Sequential([
        relax.transform.DecomposeOpsForInference(),
        relax.transform.CanonicalizeBindings(),
        *relax.pipeline.library_dispatch_passes(tgt),
        relax.transform.LegalizeOps(),
        relax.transform.AnnotateTIROpPattern(),
        relax.transform.FoldConstant(),
        relax.transform.FuseOps(),
        relax.transform.FuseTIR(),
        relax.transform.DeadCodeElimination(),
    ], name="edgenas.fuse")
    with tgt, tvm.transform.PassContext(opt_level=3):
        return seq(mod)


def schedule_and_lower(spec, with_database: bool):
    """Phases 4–5 as one pass for ``tvm.compile(relax_pipeline=...)``; run it inside ``with tgt``."""
    import tvm
    from tvm import relax

    tgt = spec.tvm()
    be = backend(spec)
    apply_db = [relax.transform.MetaScheduleApplyDatabase(enable_warning=False)] if with_database else []
    return tvm.transform.Sequential([*apply_db, *be.fallback_schedule(tgt), *be.lowering(tgt)],
                                    name="edgenas.schedule_and_lower")


def build_env(spec) -> ContextManager:
    return backend(spec).build_env(spec)


def fcompile(spec):
    return backend(spec).fcompile(spec)


def tunable_here(spec) -> bool:
    return backend(spec).tunable_here and spec.measurable_locally

