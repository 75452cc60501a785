"""Compile stage: ONNX (float or QDQ int8) -> a TVM library for a target, with shared tuning.

``compile_onnx`` is the whole stage: check and import the ONNX file, fold Q/DQ into integer ops,
fuse, optionally tune the fused tasks into ``tuning_logs/<target>/``, apply that database and
export the library (cross-compiled for aarch64 hosts, with a real fatbin for CUDA). Phases and
per-target rules are in ``pipeline.py``; tvm is imported lazily so ``import edgenas.compile``
stays cheap.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Callable

from ..errors import UsageError
from .frontend import check_onnx, import_onnx


@dataclasses.dataclass(frozen=True)
class CompileResult:
    library: str            # path of the exported .so
    target: str             # target name
    int8_ops: dict          # from FoldReport ({} if float)
    fallbacks: tuple        # from FoldReport
    kernels: dict           # FoldReport.kernel_classes(): integer ops by the kernel running them
    trials: int             # new MetaSchedule trials run in this call
    failed_runs: int        # of those, candidates that built but failed to run (e.g. a lost farm server)
    db_records: int         # records in the tuning DB after the call
    tuned: bool             # whether a tuning database was applied (and its library kept, see ``tuned_check``)
    seconds: float
    tuned_check: str = ""   # with ``keep_tuned``: the tuned library against the default schedules, which was kept


def fused_module(onnx_path, target, *, int8: bool = True, progress: Callable[[str], None] | None = None):
    """Phases 1-3 (import, int8 rewrite, fusion): ``(fused module, FoldReport or None)``.

    What tuning extracts its tasks from and what the database is applied to; the bundle's
    tuning slice calls it too, so both see the very same kernels.
    """
    from . import fused_block, packed_dot, pipeline
    from .frontend import compute_nodes
    from .qdq_rewrite import fold_qdq

    say = progress or (lambda _msg: None)
    say(f"importing {os.fspath(onnx_path)}")
    mod, report = import_onnx(onnx_path), None
    if int8:
        dot = packed_dot.kernel_for(target)
        mod, report = fold_qdq(mod, dot=dot, nodes=compute_nodes(onnx_path))
        if dot is packed_dot.KERNELS["vnni"] and target.int8_fuse_blocks:  # docs/int8_kernels.md
            mod, fused = fused_block.fuse_blocks(mod)
            report = dataclasses.replace(report, fused_blocks=fused)
        packed = f", {report.packed} on the packed dot-product kernel" if report.packed else ""
        packed += f" ({report.narrow} of them pmaddubsw: weights fit)" if report.narrow else ""
        packed += f", {report.depthwise} on the depthwise kernel" if report.depthwise else ""
        if report.fused_blocks:
            packed += f"; {report.fused_blocks} inverted-residual blocks fused into one kernel each"
        say(f"int8: {sum(report.int8_ops.values())} integer ops {dict(report.int8_ops)}{packed}, "
            f"{len(report.fallbacks)} float fallbacks")
    return pipeline.fuse(mod, target), report


def compile_onnx(onnx_path, target, out_path, *, int8: bool = True, trials: int = 0,
                 tuning_dir: str | None = None, farm=None,
                 progress: Callable[[str], None] | None = None,
                 keep_tuned: Callable[[Path, Path], tuple[bool, str]] | None = None) -> CompileResult:
    """Compile ``onnx_path`` for ``target`` (a ``TargetSpec``) into the library ``out_path``.

    ``trials > 0`` tunes the tasks that have no record yet in ``tuning_dir`` (default
    the target's ``TuningStore``): on this host when the target is measurable here, otherwise
    (or whenever ``farm``, a ``measure.rpc.Farm``, is given) through the farm's RPC servers with
    MetaSchedule's ``RPCRunner``. All input and host problems raise ``UsageError`` before any
    tuning or writing.

    The store's database, and any database tuned into, is first set aside if its records were
    measured on other kernels (``tuning_db.set_aside_stale``). A ``tuning_dir`` only read from
    is used as it is: a bundle's ``tuning/`` holds the records its library was built with.

    ``keep_tuned(tuned_lib, default_lib) -> (keep?, why)`` (``measure.tuned_check.checker``):
    when a database applies, the library is also built with the default schedules alone and the
    tuned one is kept only if ``keep_tuned`` says so; ``why`` is ``CompileResult.tuned_check``.
    A tuned library can run the model slower than the defaults (docs/tuning.md).
    """
    from . import build, pipeline, tune, tuning_db

    t0 = time.perf_counter()
    say = progress or (lambda _msg: None)
    if trials < 0:
        raise UsageError(f"trials must be >= 0, got {trials}")
    target.check_host_prerequisites()
    if trials > 0 and farm is None and not pipeline.tunable_here(target):
        raise UsageError(f"target {target.name!r} cannot be measured on this host, so it cannot be tuned here",
                         hint="compile with trials=0 to use the records in tuning_logs/, or tune through a device "
                              "farm with --tracker HOST:PORT --key KEY")
    if trials > 0 and farm is not None and not pipeline.tunable_remotely(target):
        raise UsageError(f"target {target.name!r} cannot be tuned through a farm yet (CUDA candidates need the "
                         f"fatbin build in MetaSchedule's workers)",
                         hint="compile with trials=0: CUDA kernels get DLight's default schedules")
    check_kernels = tuning_dir is None or trials > 0  # a database edgenas keeps using and extending
    if tuning_dir is None:
        from ..tuning_store import TuningStore

        tuning_dir = TuningStore(target).database_dir
    tuning_dir = Path(tuning_dir)

    fused, report = fused_module(onnx_path, target, int8=int8, progress=say)
    int8_ops, fallbacks = (dict(report.int8_ops), tuple(report.fallbacks)) if report else ({}, ())
    kernels = report.kernel_classes() if report else {}
    if check_kernels:
        tuning_db.set_aside_stale(tuning_dir)

    new_trials = failed_runs = 0
    if trials > 0:
        runner = farm.ms_runner() if farm is not None else None
        where = f" through {farm.tracker} key {farm.key!r}" if farm is not None else ""
        say(f"tuning{where}")
        stats = tune.tune(fused, target, str(tuning_dir), trials, runner=runner,
                          farm_alive=farm.has_servers if farm is not None else None, progress=say)
        new_trials, failed_runs = stats.trials, stats.run_errors
        say(f"tuning: {stats.trials} trials on {stats.tasks_tuned}/{stats.tasks} tasks in {stats.seconds:.0f} s"
            + (f", {stats.run_errors} failed to run" if stats.run_errors else ""))
    database, n_records = tuning_db.load(tuning_dir, tune.MODULE_EQUALITY)
    say(f"building for {target.name}" + (f" with {n_records} tuning records" if database else " (untuned)"))
    default_lib = None
    if database is not None and keep_tuned is not None:
        default_lib = Path(out_path).with_name(f".{Path(out_path).stem}.default-schedules{Path(out_path).suffix}")
        build.build(fused, target, default_lib)
    lib, skipped = build.build(fused, target, out_path, database)
    if skipped:
        say(f"{len(skipped)} kernel(s) kept untuned, their record did not apply: {'; '.join(skipped)}")
    applied, check = database is not None, ""
    if default_lib is not None:
        try:
            say("timing the tuned library against the default schedules")
            keep, check = keep_tuned(lib, default_lib)
            say(check)
            if not keep:
                os.replace(default_lib, lib)
                applied = False
        finally:
            default_lib.unlink(missing_ok=True)
    return CompileResult(library=str(lib), target=target.name, int8_ops=int8_ops, fallbacks=fallbacks, kernels=kernels,
                         trials=new_trials, failed_runs=failed_runs, db_records=n_records, tuned=applied,
                         seconds=time.perf_counter() - t0, tuned_check=check)


__all__ = ["CompileResult", "check_onnx", "compile_onnx", "fused_module", "import_onnx"]
