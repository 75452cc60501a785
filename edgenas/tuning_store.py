"""The tuning store: what this host measured for one target, kept for every later run.

``tuning_logs/<target>/`` (``EDGENAS_TUNING_LOGS`` overrides the root: tests point it at a temp
dir so they never write into the committed ``tuning_logs/``) holds the MetaSchedule database,
the per-op latency table, the whole-network latency points and the baselines
(docs/architecture.md §7). Latencies belong to the machine that measured them, so the store is
per host and not committed. ``TuningStore`` is the one place that knows these file names.

Latencies also belong to the kernels that ran: the op table and the latency points carry the
``compile.kernel_version.latency_stamp`` they were measured with, and one of other kernels is
moved aside (``op_latency.stale-<stamp>.json``) with one line on stderr, never used and never
deleted; the next build measures afresh (docs/tuning.md, "Kernel versions").
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .errors import register_damaged_hint
from .target import REPO_ROOT, TargetSpec, get_target

OP_TABLE = "op_latency.json"
LATENCY_POINTS = "latency_points.json"
SEARCH_BASELINES = "baselines.json"   # scripts/bench_search.py: searched arms, random search, the sweep
GATE_BASELINE = "baseline.json"       # edgenas bench --update-baseline: the regression gate's medians

register_damaged_hint(OP_TABLE, "delete it: the op latencies are profiled again by the next build")


def tuning_root() -> Path:
    """The root of every target's store (``EDGENAS_TUNING_LOGS`` overrides ``tuning_logs/``)."""
    return Path(os.environ.get("EDGENAS_TUNING_LOGS", REPO_ROOT / "tuning_logs"))


@dataclass(frozen=True)
class TuningStore:
    """``<tuning root>/<target name>/``; built from a ``TargetSpec`` (or, for readers of records
    that name their target, from the name with :meth:`named`)."""

    target: str
    dir: Path
    spec: TargetSpec | None = field(compare=False, repr=False)   # None when built from a name

    def __init__(self, target):
        name = target if isinstance(target, str) else target.name
        object.__setattr__(self, "target", name)
        object.__setattr__(self, "dir", tuning_root() / name)
        object.__setattr__(self, "spec", None if isinstance(target, str) else target)

    @classmethod
    def named(cls, name: str) -> "TuningStore":
        return cls(name)

    @property
    def kernels(self) -> str:
        """The ``latency_stamp`` of this target's kernels: what the op table and points must carry."""
        from .compile.kernel_version import latency_stamp

        return latency_stamp(self.spec or get_target(self.target))

    def _lock(self, path: Path, *, to_write: bool = True):
        """``path``'s file lock, taken by whoever writes or moves it. A reader of a file that is
        not there takes none: reading an empty store writes nothing into it."""
        from filelock import FileLock

        if not (to_write or path.exists()):
            return contextlib.nullcontext()
        self.dir.mkdir(parents=True, exist_ok=True)
        return FileLock(str(path) + ".lock")

    def _current(self, path: Path, cls, subject: str, verb: str, then: str):
        """The record in ``path`` if it was measured with this target's kernels, else None: one of
        other kernels is moved aside, never overwritten, with one line on stderr (``subject verb``
        with which kernels, ``then`` what happens now). The caller holds ``path``'s lock."""
        from . import fsio, records

        if not path.exists():
            return None
        found = records.load(path, cls)
        if found.kernels == self.kernels:
            return found
        aside = fsio.stale_name(path, found.kernels or "unstamped")
        os.rename(path, aside)
        old = f"with kernels {found.kernels}" if found.kernels else "before kernel versions were stamped"
        print(f"warning: {subject} in {self.dir} {verb} {old}, these are {self.kernels}: {then}; "
              f"the old file is kept as {aside.name}", file=sys.stderr, flush=True)
        return None

    # -- the MetaSchedule database ------------------------------------------------------------
    @property
    def database_dir(self) -> Path:
        """The shared JSON database (``compile/tuning_db.py`` merges into it under a lock)."""
        return self.dir

    # -- the op table -------------------------------------------------------------------------
    @property
    def op_table_file(self) -> Path:
        return self.dir / OP_TABLE

    def op_table(self):
        """The op table kept for this target: an empty one (of these kernels) when none was
        profiled yet, or only with other kernels (that one is moved aside: ``_current``)."""
        from .latency.table import LatencyTable

        with self._lock(self.op_table_file, to_write=False):
            kept = self._current(self.op_table_file, LatencyTable, "the op table", "was profiled", "profiling it again")
        return kept or LatencyTable(self.target, kernels=self.kernels)

    def save_op_table(self, table) -> None:
        """Keep ``table`` for later runs if it was measured with this target's kernels. A run
        resumed from before a kernel change goes on with its own table (in its run directory);
        kept here, that table would replace one of the current kernels."""
        from . import records

        if table.kernels == self.kernels:
            with self._lock(self.op_table_file):
                records.save(self.op_table_file, table)

    def forget_op_table(self) -> bool:
        """Drop the op table (measured on kernels since re-tuned); True if there was one."""
        if self.op_table_file.exists():
            self.op_table_file.unlink()
            return True
        return False

    # -- whole-network latency points ---------------------------------------------------------
    @property
    def latency_points_file(self) -> Path:
        return self.dir / LATENCY_POINTS

    def _points(self):
        """The kept points of these kernels, or an empty set (the caller holds their lock)."""
        from .latency.dataset import LatencyDataset

        return (self._current(self.latency_points_file, LatencyDataset, "the latency points", "were measured",
                              "not reusing them")
                or LatencyDataset(self.target, kernels=self.kernels))

    def latency_points(self):
        """The measured networks kept for this target (``latency.dataset.LatencyDataset``): none
        when they were measured with other kernels (those are moved aside: ``_current``)."""
        with self._lock(self.latency_points_file, to_write=False):
            return self._points()

    def add_latency_points(self, *points) -> None:
        """Append measured networks under a file lock (builds for one target may run side by side)."""
        from . import records

        with self._lock(self.latency_points_file):
            records.save(self.latency_points_file, self._points().add(*points))

    # -- baselines ----------------------------------------------------------------------------
    @property
    def search_baselines_file(self) -> Path:
        return self.dir / SEARCH_BASELINES

    @property
    def gate_baseline_file(self) -> Path:
        return self.dir / GATE_BASELINE
