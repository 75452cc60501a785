"""The slice of a target's tuning database that a bundle's model uses.

``tuning_logs/<target>/`` holds records for every op configuration of the search space (docs/architecture.md
§3, "tune the space, not the model"); a bundle needs only the records its own kernels were built
with, so that the compile can be reproduced from the bundle alone
(``compile_onnx(B/model_int8.onnx, spec, out, tuning_dir=B/"tuning")``). The model is imported and
fused exactly as the compile stage does, its MetaSchedule tasks are extracted with the same
``anchor-block`` equality, and the best record of each task is copied into a fresh
``JSONDatabase``. A task without a record was built with the target's fallback schedule; the
slice says how many those were.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from ..compile import tuning_db


@dataclass(frozen=True)
class TuningSlice:
    db: str                # the shared DB the slice was cut from
    db_records: int        # records in the shared DB
    tasks: int             # MetaSchedule tasks of this model on this target
    tasks_with_record: int
    records: int           # records written into the bundle's tuning/

    def as_dict(self) -> dict:
        return {**asdict(self), "slice": "per-model: the best record of each of this model's tasks"}


def _write_empty(dst: Path) -> None:
    """An empty but valid database, so ``tuning/`` can always be passed as a tuning dir."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in (tuning_db.WORKLOADS, tuning_db.RECORDS):
        (dst / name).write_text("")


def _model_tasks(onnx_path: Path, spec):
    """The model's tasks as the compile stage sees them (same import, int8 fold and fusion)."""
    from ..compile import fused_module
    from ..compile.tune import tunable_tasks

    fused, _ = fused_module(onnx_path, spec)
    return tunable_tasks(fused, spec.tvm())


def slice_tuning_db(onnx_path: Path, spec, src_dir: Path, dst: Path) -> TuningSlice:
    """Write into ``dst`` the records of ``src_dir`` that ``onnx_path`` compiles with on ``spec``."""
    from ..compile.tune import MODULE_EQUALITY

    n_src = tuning_db.count_records(src_dir)
    if n_src == 0:  # nothing tuned for this target (yet): no need to import the model
        _write_empty(dst)
        return TuningSlice(str(src_dir), 0, 0, 0, 0)
    from tvm.s_tir import meta_schedule as ms

    shared, _ = tuning_db.load(src_dir, MODULE_EQUALITY)
    tasks = _model_tasks(onnx_path, spec)
    tgt = spec.tvm()
    found = [r for r in (shared.query_tuning_record(t.dispatched[0], tgt, t.task_name) for t in tasks) if r is not None]
    work = Path(tempfile.mkdtemp(prefix=".tuning-", dir=dst.parent))
    try:
        db = ms.database.JSONDatabase(work_dir=str(work), allow_missing=True, module_equality=MODULE_EQUALITY)
        for rec in found:
            wl = db.commit_workload(rec.workload.mod)
            db.commit_tuning_record(ms.database.TuningRecord(rec.trace, wl, rec.run_secs, rec.target, rec.args_info))
        del db
        _write_empty(dst)
        for name in (tuning_db.WORKLOADS, tuning_db.RECORDS):
            if (work / name).exists():
                shutil.copyfile(work / name, dst / name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    written = len(tuning_db._lines(dst / tuning_db.RECORDS))  # not count_records: it would leave a lock file here
    return TuningSlice(str(src_dir), n_src, len(tasks), len(found), written)
