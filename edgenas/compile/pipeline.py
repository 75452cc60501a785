"""The compile pipeline as named phases, with every per-target difference in ONE table.

docs/architecture.md §4: Relax's own ``relax/pipeline.py`` repeats a ``target.kind`` if-chain in five
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
    from .cuda_env import cuda_fatbin_env

    return cuda_fatbin_env(spec)


def _cpu_fallback(_spec, kernel=None) -> list:
    # Kernels without a record get edgenas' default CPU schedules (default_schedule.py), so an
    # untuned library is usable; MetaSchedule records (tuning_logs/<target>/) replace them.
    from tvm.s_tir import dlight as dl

    from . import default_schedule

    return [dl.ApplyDefaultSchedule(*default_schedule.rules(kernel))]


def _gpu_fallback(_spec, _kernel=None) -> list:
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

    fallback_schedule: Callable[..., list]        # (TargetSpec, packed kernel) -> passes after the DB
    lowering: Callable[[object], list]            # tvm Target -> dataflow lowering + finalisation
    build_env: Callable[[object], ContextManager]  # TargetSpec -> env around tvm.compile
    fcompile: Callable[[object], object]           # TargetSpec -> export_library's fcompile
    tunable_here: bool                             # may MetaSchedule measure it on this host?
    tunable_remotely: bool                         # may MetaSchedule tune it through a device farm?
    packed_int8: bool                              # x86 packed dot-product kernels (packed_dot.KERNELS)?


BACKENDS: dict[tuple[str, str], Backend] = {
    ("llvm", "x86_64"): Backend(_cpu_fallback, _stock_lowering("cpu_generic"), _no_env, _host_compiler, True, True, True),
    ("llvm", "aarch64"): Backend(_cpu_fallback, _stock_lowering("cpu_generic"), _no_env, _cross_compiler, False, True, False),
    # CUDA candidates would need the fatbin environment (cuda_env.cuda_fatbin_env) inside MetaSchedule's
    # build workers; until then CUDA libraries use DLight's default schedules only.
    ("cuda", "x86_64"): Backend(_gpu_fallback, _stock_lowering("cuda"), _cuda_env, _host_compiler, False, False, False),
    ("cuda", "aarch64"): Backend(_gpu_fallback, _stock_lowering("cuda"), _cuda_env, _cross_compiler, False, False, False),
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
        # A reshape left alone (e.g. after the flat int8 1x1 conv, qdq_rewrite) back to R.reshape,
        # which the VM runs as a view instead of a copy kernel (the stock pipeline does the same).
        relax.transform.RewriteDataflowReshape(),
        relax.transform.DeadCodeElimination(),
    ], name="edgenas.fuse")
    with tgt, tvm.transform.PassContext(opt_level=3):
        return seq(mod)


def tuned_schedule(query, database, tgt, top_k: int = 8):
    """The fastest record of ``database`` that applies to the normalised PrimFunc module ``query``.

    Returns ``(schedule or None, reason the last candidate failed or None)``. With
    ``anchor-block`` equality a record may come from a kernel with the same anchor (conv, matmul,
    reduction) but other constants or another epilogue; its trace is then re-targeted with
    ``schedule_using_anchor_trace``, which in 0.27 sometimes fails an internal check
    (``inst->outputs.size() <= outputs.size()``, e.g. an fp32 ``mean`` record offered to an int8
    ``mean + quantize + dequantize`` kernel). The next-best record is tried instead, and a
    kernel no record fits is left to the fallback schedule (and counts as untuned for ``tune``).
    """
    import tvm_ffi
    from tvm import s_tir
    from tvm.s_tir.meta_schedule.trace_apply import schedule_using_anchor_trace

    if not database.has_workload(query):
        return None, None
    reason = None
    for record in database.get_top_k(database.commit_workload(query), top_k):
        try:
            if tvm_ffi.structural_equal(query, record.workload.mod):
                sch = s_tir.Schedule(record.workload.mod)
                record.trace.apply_to_schedule(sch, remove_postproc=False)
            else:
                sch = s_tir.Schedule(query)
                schedule_using_anchor_trace(sch, record.trace, tgt)
            return sch, None
        except RuntimeError as e:  # tvm InternalError / ScheduleError / TVMError
            reason = (str(e).strip().splitlines() or [type(e).__name__])[-1][:120]
    return None, reason


def apply_database(mod, database, tgt, skipped: list[str]):
    """Phase 4a: replace each fused PrimFunc that has a usable record by its tuned schedule.

    ``relax.transform.MetaScheduleApplyDatabase`` does the same but aborts the whole build on
    the first record that does not apply (see ``tuned_schedule``); here that kernel keeps the
    backend's fallback schedule and is named in ``skipped``.
    """
    import tvm
    from tvm.s_tir.meta_schedule.tune_context import _normalize_mod

    for gv, func in list(mod.functions.items()):
        if not isinstance(func, tvm.tirx.PrimFunc) or func.attrs.get("tirx.is_scheduled", False):
            continue
        sch, reason = tuned_schedule(_normalize_mod(func), database, tgt)
        if sch is None:
            if reason is not None:
                skipped.append(f"{gv.name_hint} ({reason})")
            continue
        tuned = sch.mod["main"]
        new = tvm.tirx.PrimFunc(tuned.params, tuned.body, tuned.ret_type, attrs=func.attrs)
        mod[gv] = new.with_attr("tirx.is_scheduled", True)
    return mod


def schedule_and_lower(spec, database=None, skipped: list[str] | None = None, kernel=None):
    """Phases 4–5 as one pass for ``tvm.compile(relax_pipeline=...)``; run it inside ``with tgt``.
    ``kernel`` is the target's packed int8 kernel (``packed_dot.kernel_for``), for the defaults."""
    import tvm

    tgt = spec.tvm()
    be = backend(spec)
    skipped = [] if skipped is None else skipped

    @tvm.transform.module_pass(opt_level=0, name="edgenas.apply_database")
    def _apply(mod, _ctx):
        return apply_database(mod, database, tgt, skipped) if database is not None else mod

    return tvm.transform.Sequential([_apply, *be.fallback_schedule(spec, kernel), *be.lowering(tgt)],
                                    name="edgenas.schedule_and_lower")


def build_env(spec) -> ContextManager:
    return backend(spec).build_env(spec)


def fcompile(spec):
    return backend(spec).fcompile(spec)


def tunable_here(spec) -> bool:
    return backend(spec).tunable_here and spec.measurable_locally


def tunable_remotely(spec) -> bool:
    return backend(spec).tunable_remotely

