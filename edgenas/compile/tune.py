"""MetaSchedule tuning of a fused Relax module into the shared ``tuning_logs/<target>/`` database.

Why it looks like this (docs/architecture.md §3 "Tune the space, not the model"; docs/tvm.md §5):

* Only tasks no record of the shared DB applies to are tuned, so a second compile of the same
  model, or of another model built from the same op configurations, runs no trials at all.
* ``module_equality="anchor-block"`` (checked in 0.27: four same-shape int8 convs with different
  scales are one task, 9 -> 6 tasks on a small net): such layers share records, and the trace is
  re-targeted with ``schedule_using_anchor_trace`` (``pipeline.tuned_schedule``, which also
  survives the cases where 0.27 cannot re-target a trace).
* Tuning writes into a private work dir; every measured trial is merged into the shared DB as it
  arrives (``trial_sink``, through ``tuning_db.merge``), so a killed run keeps what it paid for
  and two concurrent tuners cannot corrupt the shared files. A tuning call is a job in the
  shared DB's ledger until it finishes; a rerun of the same tasks takes over a dead job and runs
  only the trials it had left. The private dir is removed on every exit, and one left by a
  killed tuner (its name carries the pid) is removed by the next tuning.
* Every task's first trial is its default schedule (``default_schedule``), measured by the same
  builder and runner as the candidates and stored as an ordinary record. The database then
  picks a MetaSchedule schedule only where it measured faster than the default, so a tuned
  library is never slower than the untuned one by more than the measurement noise
  (docs/tuning.md, "The default schedule is a trial").
* ``WarmBuilder`` keeps its build workers alive across batches. MetaSchedule's ``LocalBuilder``
  starts fresh workers for every batch, and each one pays the ``tvm.s_tir.tensor_intrin`` import
  (20–45 s here, 2–3 s with ``fastinspect``); warm workers pay it once, outside the build timeout.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Callable

from ..errors import EdgenasError
from . import default_schedule, fastinspect, packed_dot, pipeline, trial_sink, tuning_db

MODULE_EQUALITY = "anchor-block"
BUILD_TIMEOUT_S = 60.0
RECYCLE_WORKER_AFTER = 256  # builds per worker before a restart (PopenPool workers leak memory)
MAX_TRIALS_PER_ITER = 32
WORK_PREFIX = "edgenas-tune-"   # + pid: a killed tuner's folder is found and removed by the next one
# How a candidate is timed (MetaSchedule's ``EvaluatorConfig``), here and through a farm: one call
# per sample, the caches flushed of every argument but the first before each, 15 samples. In a
# model a kernel's input activation was just written by the kernel before (warm) but its weights
# were last read a whole inference ago (cold); timed hot (number=3, 20 ms per sample) a candidate
# is ranked for a situation the model never has (docs/tuning.md, "How a candidate is timed").
# (The flush is CPU-only: a GPU target keeps the hot timing.)
EVALUATOR = dict(number=1, repeat=15, min_repeat_ms=0, enable_cpu_cache_flush=True)


def evaluator_config(tgt):
    """MetaSchedule's ``EvaluatorConfig`` for candidates of the TVM target ``tgt``: ``EVALUATOR``
    on a CPU, without the cache flush elsewhere."""
    from tvm.s_tir.meta_schedule.runner import EvaluatorConfig

    return EvaluatorConfig(**{**EVALUATOR, "enable_cpu_cache_flush": tgt.kind.name == "llvm"})


def _task_key(task) -> str:
    """A task's identity across processes (the ledger of unfinished tunings keys on it)."""
    import tvm_ffi

    return f"{task.task_name}:{tvm_ffi.structural_hash(task.dispatched[0])}"


def _sweep_dead_work_dirs() -> None:
    """Remove the private work dirs of tuners that were killed (SIGKILL runs no clean-up)."""
    base = tempfile.gettempdir()
    for name in os.listdir(base):
        pid = name[len(WORK_PREFIX):].split("-", 1)[0]
        if name.startswith(WORK_PREFIX) and pid.isdigit() and not tuning_db.alive(int(pid)):
            shutil.rmtree(os.path.join(base, name), ignore_errors=True)


@dataclass(frozen=True)
class TuneStats:
    trials: int          # candidates measured in this call
    build_errors: int    # candidates that failed to build (should be 0)
    run_errors: int      # candidates that built but failed to run
    tasks: int           # tasks in the module
    tasks_tuned: int     # tasks without a usable record, tuned in this call
    seconds: float


def export_shared_library(rt_mod, cross_compiler: str | None = None, work_dir: str | None = None) -> str:
    """Builder-side export to a linked ``.so`` (MetaSchedule's default is a ``.tar``, which the
    single runner worker must then link with g++ — ~1 s per candidate, serialised; linking here
    runs in the parallel build workers). Candidates for an aarch64 farm are linked with the
    target's cross compiler."""
    path = os.path.join(tempfile.mkdtemp(prefix="edgenas-cand-", dir=work_dir), "tvm_tmp_mod.so")
    if cross_compiler:
        from tvm.support import cc

        rt_mod.export_library(path, fcompile=cc.cross_compiler(cross_compiler))
    else:
        rt_mod.export_library(path)
    return path


def _builder(max_workers: int, f_export=None, sink=None):
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
    from tvm.s_tir.meta_schedule.builder.local_builder import _serialize_params, _worker_func
    from tvm.ir.utils import derived_object
    from tvm.support.popen_pool import PopenPoolExecutor, StatusKind

    @derived_object
    class WarmBuilder(PyBuilder):
        """``LocalBuilder`` with one long-lived worker pool (see the module docstring)."""

        def __init__(self):
            super().__init__()
            self.pool = PopenPoolExecutor(max_workers=max_workers, timeout=BUILD_TIMEOUT_S,
                                          initializer=fastinspect.install,
                                          maximum_process_uses=RECYCLE_WORKER_AFTER)

        def build(self, build_inputs):
            args = [(None, f_export, b.mod, b.target, _serialize_params(b.params)) for b in build_inputs]
            results = []
            for r in self.pool.map_with_error_catching(lambda a: _worker_func(*a), args):
                if r.status == StatusKind.COMPLETE:
                    results.append(BuilderResult(r.value, None))
                else:
                    results.append(BuilderResult(None, f"WarmBuilder: {r.status.name}: {r.value}"))
            if sink is not None:
                sink.built(results)
            return results

        def close(self):
            self.pool.shutdown()

    return WarmBuilder()


class TuningAborted(RuntimeError):
    """A whole measured batch failed to run on a remote runner: the farm is gone."""


def _error_line(msg: str) -> str:
    lines = [ln.strip() for ln in (msg or "").splitlines() if ln.strip()]
    tail = [ln for ln in lines if "Error" in ln or "error" in ln or "Timeout" in ln]
    return (tail[-1] if tail else lines[-1] if lines else "unknown error")[:200]


def _checkpoint_callback(total: int, task_names: list[str], progress: Callable[[str], None], counts: dict,
                         farm_alive: Callable[[], bool] | None):
    from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback
    from tvm.ir.utils import derived_object

    @derived_object
    class MergeIntoShared(PyMeasureCallback):
        """After each measured batch: count it and report it (its trials are already merged, one by one)."""

        def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results):
            counts["trials"] += len(measure_candidates)
            counts["build_errors"] += sum(b.error_msg is not None for b in builder_results)
            failed = [r.error_msg for b, r in zip(builder_results, runner_results)
                      if b.error_msg is None and r.error_msg is not None]
            counts["run_errors"] += len(failed)
            if failed and not counts["first_run_error"]:
                counts["first_run_error"] = _error_line(failed[0])
            times = [sum(r.run_secs) / len(r.run_secs) for r in runner_results if r.run_secs]
            best = f", batch best {min(float(t) for t in times) * 1e3:.3f} ms" if times else ""
            progress(f"tuned {counts['trials']}/{total} trials ({task_names[task_id]}{best}; "
                     f"{counts['build_errors']} build errors, {counts['run_errors']} run errors)")
            built = sum(b.error_msg is None for b in builder_results)
            if farm_alive is not None and built and len(failed) == built and not farm_alive():
                # Every candidate of the batch failed on the farm and the tracker lists no server
                # for the key: the servers are gone. Stop instead of waiting out every remaining
                # candidate; what was measured so far is already merged. (A batch lost with servers
                # still registered, e.g. one candidate on the one server killed, goes on.)
                counts["aborted"] = _error_line(failed[-1])
                raise TuningAborted(counts["aborted"])

    return MergeIntoShared()


def _runner_init(threads: int) -> None:
    """Runner worker set-up: the ``getmodule`` memo (it imports MetaSchedule too: 32 s bare), and
    the target's thread count. TVM otherwise runs cores/2 threads on x86 (it assumes SMT), i.e.
    1 thread on this 2-core box, and candidates would be ranked for the wrong thread count."""
    os.environ.setdefault("TVM_NUM_THREADS", str(threads))
    fastinspect.install(warm=False)


def _console_handler():
    """MetaSchedule's stdout handler (installed by ``extracted_tasks_to_tune_contexts``): it prints
    task tables and XGBoost iterations, which would break the CLI's progress display; the full
    logs still go to the work dir's files, and our progress callback reports each batch."""
    import logging

    name = "tvm.s_tir.meta_schedule"
    return next((h for h in logging.getLogger(name).handlers if h.get_name() == f"{name}.console"), None)


@contextlib.contextmanager
def _foreign_handlers_detached():
    """MetaSchedule re-runs ``logging.config.dictConfig`` for every tuning, listing the handlers
    already on its logger by name; a handler someone else attached (pytest's log capture, an
    application's) has no name there and the call fails (``'NoneType' object has no attribute
    'format'``) on the second tuning in a process. Detach those for the call, then put them back."""
    import logging

    logger = logging.getLogger("tvm.s_tir.meta_schedule")
    foreign = [h for h in logger.handlers if not (h.get_name() or "").startswith("tvm.s_tir.meta_schedule")]
    for h in foreign:
        logger.removeHandler(h)
    try:
        yield
    finally:
        for h in foreign:
            logger.addHandler(h)


# a line that starts a new record on fd 2: a TVM log header ``[12:34:56] file.cc:12: ...``, a
# Python warning ``file.py:12: UserWarning``, a traceback, or one of edgenas' own lines
_RECORD_START = re.compile(rb"^(\[\d\d:\d\d:\d\d\]|\S+\.py:\d+: |Traceback |error: |warning: |interrupted: )")


@contextlib.contextmanager
def _stderr_without(*markers: str):
    """Drop C++ log lines containing any of ``markers`` from file descriptor 2 for the duration.

    MetaSchedule's ``RewriteTensorize`` logs one ``Tensorize failed`` warning per candidate of
    the packed GEMMs whose sampled schedule cannot use the intrinsic. That is a normal outcome:
    the candidate is dropped and others are measured. But it writes hundreds of lines straight
    to fd 2, under the CLI's progress display. The message of a dropped record can span lines
    (the schedule error ends in a newline, so a bare blank line follows it): those continuation
    lines go with it, up to the next line that starts a record. Bare blank lines go too. Every other
    line passes unchanged.
    """
    import sys
    import threading

    encoded = [m.encode() for m in markers]
    sys.stderr.flush()
    saved, (r, w) = os.dup(2), os.pipe()
    os.dup2(w, 2)
    os.close(w)

    def pump():
        dropping = False  # inside a dropped record: its continuation lines go too
        with os.fdopen(r, "rb") as pipe:
            for line in pipe:
                if any(m in line for m in encoded):
                    dropping = True
                elif not line.strip():  # a bare blank line carries nothing and would break the one-line error
                    continue
                elif not (dropping and not _RECORD_START.match(line)):
                    dropping = False
                    os.write(saved, line)

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end: the pump sees EOF
        t.join(timeout=5)
        os.close(saved)


def _measure_defaults(contexts, target, builder, runner, sink, progress, counts: dict,
                      farm_alive: Callable[[], bool] | None) -> None:
    """Build and run each task's default schedule through ``sink`` (so it lands in the shared
    DB as a record, like any trial). A default that fails to build or run is recorded as failed
    and the tuned candidates decide alone; one that failed because the farm has no server left
    stops the tuning as a lost batch does (``TuningAborted``). Each counts as a trial in ``counts``."""
    from tvm.runtime import Device
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo
    from tvm.s_tir.meta_schedule.builder import BuilderInput
    from tvm.s_tir.meta_schedule.runner import RunnerInput
    from tvm.s_tir.meta_schedule.search_strategy import MeasureCandidate

    kernel = packed_dot.kernel_for(target)
    tgt = target.tvm()
    device = Device._DEVICE_TYPE_TO_NAME[tgt.get_target_device_type()]  # "cpu", as the runner expects
    progress(f"measuring the default schedule of {len(contexts)} tasks")
    for ctx in contexts:
        with tgt:
            sch = default_schedule.default_for(ctx.mod["main"], tgt, kernel)
        cand = MeasureCandidate(sch, ArgInfo.from_entry_func(sch.mod, remove_preproc=True))
        sink.generated(ctx, [cand])
        (built,) = builder.build([BuilderInput(sch.mod, tgt)])
        counts["trials"] += 1
        error = built.error_msg
        if error is None:
            (future,) = runner.run([RunnerInput(built.artifact_path, device, cand.args_info)])
            error = future.result().error_msg  # reading the result commits the trial (trial_sink.wrap_runner)
            if error is not None and farm_alive is not None and not farm_alive():
                counts["aborted"] = _error_line(error)
                raise TuningAborted(counts["aborted"])
        if error is not None:
            counts["build_errors" if built.error_msg else "run_errors"] += 1
            progress(f"warning: the default schedule of {ctx.task_name} failed to measure ({_error_line(error)})")


def tunable_tasks(mod, tgt) -> list:
    """MetaSchedule's tasks of the fused module ``mod``, less the PrimFuncs that come scheduled
    (``tirx.is_scheduled``: the hand-written fused inverted-residual kernel, ``fused_block``).
    MetaSchedule's own check looks at the task module's attributes, not the function's, so it
    would hand such a kernel to the schedule rules; the build keeps it as written anyway."""
    from tvm.s_tir.meta_schedule.relax_integration import extract_tasks

    return [t for t in extract_tasks(mod, tgt, module_equality=MODULE_EQUALITY)
            if not t.dispatched[0]["main"].attrs.get("tirx.is_scheduled", False)]


def tune(mod, target, tuning_dir: str, trials: int, *, trials_per_round: int | None = None, runner=None,
         farm_alive: Callable[[], bool] | None = None, progress: Callable[[str], None] | None = None,
         seed: int | None = 0) -> TuneStats:
    """Tune the tasks of the fused module ``mod`` that have no record in ``tuning_dir``.

    ``target`` is a ``TargetSpec``; ``runner`` defaults to a ``LocalRunner`` (the caller decides
    whether the target can be measured here); with a remote runner (``Farm.ms_runner``),
    ``farm_alive`` (``Farm.has_servers``) is asked after a batch that failed to run whole, and the
    tuning stops with ``EdgenasError`` when it says the farm is gone. Returns
    what was run; the records are in the shared DB when this returns (or, if it fails or is
    interrupted, up to the last measured trial, and a rerun runs only the trials left).
    """
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.relax_integration import extracted_tasks_to_tune_contexts

    progress = progress or (lambda _msg: None)
    t0 = time.perf_counter()
    # The schedule rules built for each task import the tensor intrinsics here too (~20 s bare).
    fastinspect.install(warm=False)
    tgt = target.tvm()
    tasks = tunable_tasks(mod, tgt)
    shared, _ = tuning_db.load(tuning_dir, MODULE_EQUALITY)
    unfinished = tuning_db.unfinished_tasks(tuning_dir)
    # A task counts as tuned only if some record actually applies to it (pipeline.tuned_schedule)
    # and no interrupted tuning of it has trials left.
    todo = [t for t in tasks if _task_key(t) in unfinished or shared is None
            or pipeline.tuned_schedule(t.dispatched[0], shared, tgt)[0] is None]
    if trials <= 0 or not todo:
        return TuneStats(0, 0, 0, len(tasks), 0, time.perf_counter() - t0)
    job = tuning_db.start_job(tuning_dir, [_task_key(t) for t in todo], trials)
    left = trials - job.measured
    if left <= 0:
        tuning_db.finish_job(tuning_dir, job.id)
        return TuneStats(0, 0, 0, len(tasks), 0, time.perf_counter() - t0)
    per_iter = trials_per_round or max(1, min(MAX_TRIALS_PER_ITER, trials // len(todo)))
    if trials < len(todo):
        progress(f"warning: {trials} trials for {len(todo)} untuned tasks; some stay untuned")
    resumed = f" ({job.measured} measured before an interruption)" if job.measured else ""
    progress(f"tuning {len(todo)} of {len(tasks)} tasks, {left} trials{resumed}, {per_iter} per round")

    _sweep_dead_work_dirs()
    private = tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{os.getpid()}-")
    try:
        sink = trial_sink.TrialSink(os.path.join(private, "trials"), tuning_dir, job.id)
        builder = _builder(max_workers=2, sink=sink, f_export=functools.partial(
            export_shared_library, cross_compiler=target.cross_compiler, work_dir=private))
    except BaseException:
        shutil.rmtree(private, ignore_errors=True)
        raise
    counts = {"trials": 0, "build_errors": 0, "run_errors": 0, "first_run_error": "", "aborted": ""}
    console, console_level = None, 0
    try:
        # Evolutionary search dominates a round's cost on 2 cores (10–20 s at MetaSchedule's default
        # population of 512); a population of ~8x the batch measured per round keeps quality.
        population = min(256, max(64, 8 * per_iter))
        budget = [max(0, left - len(todo))]  # what MetaSchedule may generate once the defaults are measured
        strategy = trial_sink.wrap_strategy(
            ms.search_strategy.EvolutionarySearch(population_size=population, genetic_num_iters=2), sink, budget)
        with _foreign_handlers_detached():
            contexts, weights = extracted_tasks_to_tune_contexts(
                todo, private, space=packed_dot.space_generator(packed_dot.kernel_for(target)), strategy=strategy, seed=seed)
        console = _console_handler()
        if console is not None:
            console_level = console.level
            console.setLevel("WARNING")
        threads = int(target.tvm_target.get("num-cores", os.cpu_count() or 1))
        runner = trial_sink.wrap_runner(runner or ms.runner.LocalRunner(
            timeout_sec=60, initializer=functools.partial(_runner_init, threads), evaluator_config=evaluator_config(tgt)), sink)
        callbacks = ms.measure_callback.MeasureCallback.create("default") + [
            _checkpoint_callback(left, [t.task_name for t in todo], progress, counts,
                                 farm_alive if runner is not None else None)]
        try:
            # the defaults are trials of the budget: ``trials`` stays the number of measurements
            _measure_defaults(contexts[:left], target, builder, runner, sink, progress, counts, farm_alive)
            # ... and candidates of the pixel-vector GEMM whose sampled vectorization nests (dropped too)
            with _stderr_without("Tensorize failed", "Detect vectorize inside vectorized loop"):
                if left > counts["trials"]:
                    ms.tune.tune_tasks(
                        tasks=contexts, task_weights=weights, work_dir=private,
                        max_trials_global=left - counts["trials"], num_trials_per_iter=per_iter,
                        builder=builder, runner=runner,
                        database=ms.database.JSONDatabase(work_dir=private, module_equality=MODULE_EQUALITY),
                        measure_callbacks=callbacks, module_equality=MODULE_EQUALITY)
        except Exception:  # the abort crosses TVM's FFI as a generic error: recognise it by our flag
            if not counts["aborted"]:
                raise
            raise EdgenasError(
                f"tuning stopped after {counts['trials']} trials: a whole batch of candidates failed on the "
                f"device farm ({counts['aborted']}); the records measured so far are kept in {tuning_dir}, "
                f"rerun (or --resume) once servers are back") from None
        tuning_db.finish_job(tuning_dir, job.id)
    finally:
        if console is not None:
            console.setLevel(console_level)
        builder.close()
        shutil.rmtree(private, ignore_errors=True)
    if counts["trials"] and counts["run_errors"] + counts["build_errors"] >= counts["trials"]:
        raise EdgenasError(f"tuning measured nothing: all {counts['trials']} candidates failed "
                           f"(first error: {counts['first_run_error'] or 'build failed'})")
    return TuneStats(counts["trials"], counts["build_errors"], counts["run_errors"], len(tasks), len(todo),
                     time.perf_counter() - t0)
