"""The tuning store: what this host measured for one target, kept for every later run.

``tuning_logs/<target>/`` (``EDGENAS_TUNING_LOGS`` overrides the root: tests point it at a temp
dir so they never write into the committed ``tuning_logs/``) holds the MetaSchedule database,
the per-op latency table, the whole-network latency points and the baselines
(docs/architecture.md §7). Latencies belong to the machine that measured them, so the store is
per host and not committed. ``TuningStore`` is the one place that knows these file names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import register_damaged_hint
from .target import REPO_ROOT

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

    def __init__(self, target):
        name = target if isinstance(target, str) else target.name
        object.__setattr__(self, "target", name)
        object.__setattr__(self, "dir", tuning_root() / name)

    @classmethod
    def named(cls, name: str) -> "TuningStore":
        return cls(name)

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
        """The op table kept for this target (an empty one when none was profiled yet)."""
        from . import records
        from .latency.table import LatencyTable

        return records.load(self.op_table_file, LatencyTable) if self.op_table_file.exists() else LatencyTable(self.target)

    def save_op_table(self, table) -> None:
        from . import records

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

    def latency_points(self):
        """The measured networks kept for this target (``latency.dataset.LatencyDataset``)."""
        from . import records
        from .latency.dataset import LatencyDataset

        p = self.latency_points_file
        return records.load(p, LatencyDataset) if p.exists() else LatencyDataset(self.target)

    def add_latency_points(self, *points) -> None:
        """Append measured networks under a file lock (builds for one target may run side by side)."""
        from filelock import FileLock

        from . import records

        self.dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.latency_points_file) + ".lock"):
            records.save(self.latency_points_file, self.latency_points().add(*points))

    # -- baselines ----------------------------------------------------------------------------
    @property
    def search_baselines_file(self) -> Path:
        return self.dir / SEARCH_BASELINES

    @property
    def gate_baseline_file(self) -> Path:
        return self.dir / GATE_BASELINE
