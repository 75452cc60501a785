"""The shared MetaSchedule database in ``tuning_logs/<target>/``: safe to share, merge and resume.

MetaSchedule's ``JSONDatabase`` is two line-oriented files: ``database_workload.json`` (one
workload per line) and ``database_tuning_record.json`` (``[workload_line_index, record]`` per
line). It appends to them unlocked and loads them whole, so two processes tuning into the same
directory interleave lines and a reader can see records whose workload line is not yet written.

So nobody tunes into the shared directory. A tuner writes into a private work dir, and
``merge()`` copies its new lines into the shared files under a ``FileLock``: workloads are
deduplicated by their exact text, record indices are remapped, and each file is replaced
atomically (workloads first, so a record never points past the workload file). Merging is
idempotent (identical record lines are skipped), which makes merging at every tuning checkpoint
cheap and a killed tuner harmless: the shared files are always whole. Readers take the same lock
and load a snapshot, so they never see a half-merged pair.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .. import fsio

WORKLOADS = "database_workload.json"
RECORDS = "database_tuning_record.json"
LOCK = "database.lock"  # tuning_logs/**/*.lock is git-ignored
LOCK_TIMEOUT_S = 600
_RECORD_LINE = re.compile(r"^\[\s*(\d+)\s*,(.*)\]\s*$", re.S)


@dataclass(frozen=True)
class MergeResult:
    consumed: int        # record lines of ``src`` read (pass as ``skip_records`` next time)
    new_workloads: int
    new_records: int
    total_records: int


def _lock(directory: Path):
    from filelock import FileLock

    return FileLock(str(directory / LOCK), timeout=LOCK_TIMEOUT_S)


def _lines(path: Path) -> list[str]:
    """Complete lines only: a line without its newline is an append still in progress."""
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.split("\n")
    return [ln for ln in lines[:-1] if ln.strip()]  # last element is "" or a partial line


def exists(directory: str | os.PathLike) -> bool:
    d = Path(directory)
    return (d / WORKLOADS).is_file() and (d / RECORDS).is_file()


def count_records(directory: str | os.PathLike) -> int:
    d = Path(directory)
    if not exists(d):
        return 0
    with _lock(d):
        return len(_lines(d / RECORDS))


def merge(src: str | os.PathLike, dst: str | os.PathLike, skip_records: int = 0) -> MergeResult:
    """Merge ``src``'s records (after the first ``skip_records`` lines) into the shared ``dst``."""
    src, dst = Path(src), Path(dst)
    src_workloads = _lines(src / WORKLOADS)
    src_records = _lines(src / RECORDS)[skip_records:]
    dst.mkdir(parents=True, exist_ok=True)
    with _lock(dst):
        workloads = _lines(dst / WORKLOADS)
        records = _lines(dst / RECORDS)
        index = {w: i for i, w in enumerate(workloads)}
        seen = set(records)
        n_workloads, n_records = len(workloads), len(records)
        remap: dict[int, int] = {}
        for line in src_records:
            m = _RECORD_LINE.match(line)
            if m is None or int(m.group(1)) >= len(src_workloads):
                continue  # not a record line we understand: never poison the shared file
            i = int(m.group(1))
            if i not in remap:
                w = src_workloads[i]
                if w not in index:
                    index[w] = len(workloads)
                    workloads.append(w)
                remap[i] = index[w]
            new_line = f"[{remap[i]},{m.group(2)}]"
            if new_line not in seen:
                seen.add(new_line)
                records.append(new_line)
        if len(workloads) > n_workloads or not (dst / WORKLOADS).exists():
            fsio.write_text(dst / WORKLOADS, "".join(w + "\n" for w in workloads))
        if len(records) > n_records or not (dst / RECORDS).exists():
            fsio.write_text(dst / RECORDS, "".join(r + "\n" for r in records))
    return MergeResult(len(src_records), len(workloads) - n_workloads, len(records) - n_records, len(records))


def load(directory: str | os.PathLike, module_equality: str):
    """A MetaSchedule database holding the best record per workload of the shared DB, or ``None``.

    Returns ``(database, n_records)``. The files are snapshotted under the lock and loaded from
    the copy: ``JSONDatabase`` appends to (and with ``allow_missing`` creates) the files it was
    opened on, and the shared files must only ever be written by ``merge``.
    """
    from tvm.s_tir import meta_schedule as ms

    from . import packed_dot

    d = Path(directory)
    if not exists(d):
        return None, 0
    packed_dot.register()  # records of packed kernels name edgenas' tensor intrinsics; parsing needs them
    snap = Path(tempfile.mkdtemp(prefix="edgenas-db-"))
    try:
        with _lock(d):
            for name in (WORKLOADS, RECORDS):
                shutil.copyfile(d / name, snap / name)
        full = ms.database.JSONDatabase(work_dir=str(snap), allow_missing=False, module_equality=module_equality)
        best = ms.database.MemoryDatabase(module_equality=module_equality)
        full.dump_pruned(best)
        return best, len(full)
    finally:
        shutil.rmtree(snap, ignore_errors=True)
