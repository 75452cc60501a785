"""Every measured tuning trial into the shared database as it arrives, so a killed tuner loses at
most the trial it was running (docs/tuning.md, "Resume per trial").

MetaSchedule hands measured candidates to its callbacks (and to its own database) only once a
whole batch of up to 32 has run; a kill before that loses the batch. So the tuner's runner and
builder are wrapped: a trial is committed when its runner future is read — MetaSchedule reads
them one by one, in order, as the candidates finish — and a candidate that failed to build is
committed when the builder returns. Both go through ``tuning_db.merge`` (under the database
lock) and count the trial in the job's ledger entry (``tuning_db.count_trial``).

A record needs the candidate's trace, which neither the builder nor the runner sees; the search
strategy is wrapped to remember the batch it generated, and artifacts are matched back to it by
path. Failures are recorded with MetaSchedule's own "invalid" run time (1e10 s), as its
``AddToDatabase`` callback does, so they count as spent trials and are not retried.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import tuning_db

FAILED_SECS = 1e10


class TrialSink:
    """The per-trial database of one tuning call and what is in flight."""

    def __init__(self, work_dir: str, shared_dir: str, job: str):
        from tvm.s_tir import meta_schedule as ms

        self.dir, self.shared, self.job = Path(work_dir), shared_dir, job
        self.dir.mkdir(parents=True, exist_ok=True)
        self.db = ms.database.JSONDatabase(work_dir=str(self.dir), module_equality="anchor-block")
        self.batch: tuple | None = None        # (context, candidates) of the batch being built
        self.in_flight: dict[str, tuple] = {}  # artifact path -> (context, candidate)
        self.merged = 0

    def generated(self, context, candidates) -> None:
        self.batch = (context, list(candidates or []))

    def built(self, results) -> None:
        context, candidates = self.batch or (None, [])
        for cand, res in zip(candidates, results):
            if res.error_msg is None:
                self.in_flight[res.artifact_path] = (context, cand)
            else:
                self.commit(context, cand, None)

    def measured(self, artifact_path: str, result):
        entry = self.in_flight.pop(artifact_path, None)
        if entry is not None:
            self.commit(*entry, result.run_secs if result.error_msg is None else None)
        return result

    def commit(self, context, cand, run_secs) -> None:
        from tvm.s_tir import meta_schedule as ms
        from tvm.tirx import FloatImm

        workload = self.db.commit_workload(context.mod)
        secs = list(run_secs) if run_secs else [FloatImm("float32", FAILED_SECS)]
        self.db.commit_tuning_record(ms.database.TuningRecord(cand.sch.trace, workload, secs, context.target, cand.args_info))
        self.merged += tuning_db.merge(self.dir, self.shared, skip_records=self.merged).consumed
        tuning_db.count_trial(self.shared, self.job)


def wrap_strategy(inner, sink: TrialSink, budget: list[int] | None = None):
    """``inner`` (a MetaSchedule search strategy) that tells ``sink`` each batch it generates.

    ``budget`` (one-element list, shared by the strategy's clones, i.e. by every task) is the
    number of candidates all tasks together may still generate; a batch is cut to it. MetaSchedule
    checks its global trial limit only between batches, so a 640-trial tuning measured up to one
    batch more (648); with the budget it measures at most what was asked."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.search_strategy import PySearchStrategy

    @derived_object
    class Remembering(PySearchStrategy):
        def __init__(self, strategy):
            self.inner, self.context = strategy, None

        def _initialize_with_tune_context(self, context) -> None:
            self.context = context
            self.inner._initialize_with_tune_context(context)

        def pre_tuning(self, max_trials, num_trials_per_iter, design_spaces, database=None, cost_model=None):
            self.inner.pre_tuning(max_trials, num_trials_per_iter, design_spaces, database, cost_model)

        def post_tuning(self):
            self.inner.post_tuning()

        def generate_measure_candidates(self):
            candidates = self.inner.generate_measure_candidates()
            if candidates is not None and budget is not None:
                candidates = list(candidates)[:max(0, budget[0])]
                budget[0] -= len(candidates)
                if not candidates:
                    return None  # this task is done: the tuning's budget is spent
            sink.generated(self.context, candidates)
            return candidates

        def notify_runner_results(self, measure_candidates, results):
            self.inner.notify_runner_results(measure_candidates, results)

        def clone(self):
            return Remembering(self.inner.clone())

    return Remembering(inner)


def wrap_runner(inner, sink: TrialSink):
    """``inner`` whose futures commit their trial to ``sink`` when MetaSchedule reads them."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.runner import PyRunner, RunnerFuture

    @derived_object
    class Committing(PyRunner):
        def __init__(self, runner):
            super().__init__()
            self.inner = runner

        def run(self, runner_inputs):
            futures = self.inner.run(runner_inputs)
            return [RunnerFuture(f_done=f.done, f_result=lambda f=f, p=os.fspath(i.artifact_path): sink.measured(p, f.result()))
                    for f, i in zip(futures, runner_inputs)]

    return Committing(inner)


__all__ = ["TrialSink", "wrap_strategy", "wrap_runner", "FAILED_SECS"]
