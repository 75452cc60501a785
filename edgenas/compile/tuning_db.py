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

A database also records which kernels its records were measured on (``KERNELS``, written when
``merge`` creates it): every task's first record is the measured default schedule, and one of
older kernels would hide a faster new default. ``set_aside_stale`` moves a database of other
kernels aside whole before it is used (docs/tuning.md, "Kernel versions").
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .. import fsio
from ..errors import DamagedFile, EdgenasError, register_damaged_hint
from .kernel_version import schedule_stamp

WORKLOADS = "database_workload.json"
RECORDS = "database_tuning_record.json"
LOCK = "database.lock"  # tuning_logs/**/*.lock is git-ignored
JOBS = "unfinished_tuning.json"  # tuning calls that have not finished: their tasks and trials spent
KERNELS = "database_kernels.txt"  # kernel_version.schedule_stamp() of the kernels the records were measured on
register_damaged_hint(JOBS, "delete it: interrupted tunings then start over")
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
        if not (dst / WORKLOADS).exists():  # a new database: it holds records of these kernels
            fsio.write_text(dst / KERNELS, schedule_stamp() + "\n")
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


def set_aside_stale(directory: str | os.PathLike) -> Path | None:
    """Move the database in ``directory`` aside if its records were measured on other kernels
    (``KERNELS`` other than ``schedule_stamp()``, or none: made before kernels were stamped), into
    ``database.stale-<stamp>/`` beside it, with one line on stderr (as ``TuningStore`` does for the
    op table: whichever compile meets it first, a profiling one included, says so). Returns that
    folder, or None when the database is current or there is none. Its tasks are then tuned (and
    their defaults measured) afresh.

    Only the database's own files move (the folder may be the whole tuning store). Under the lock,
    and the records go first and the stamp last: a database half moved by a kill has no records
    left to mislead, and its stale stamp makes the next call move the rest."""
    d = Path(directory)
    if not ((d / WORKLOADS).exists() or (d / RECORDS).exists()):
        return None
    with _lock(d):
        found = (d / KERNELS).read_text(errors="replace").strip() if (d / KERNELS).exists() else ""
        if found == schedule_stamp():
            return None
        aside = fsio.stale_name(d / "database", found or "unstamped")
        aside.mkdir()
        for name in (RECORDS, JOBS, WORKLOADS, KERNELS):
            if (d / name).exists():
                os.replace(d / name, aside / name)
    old = f"with kernels {found}" if found else "before kernel versions were stamped"
    print(f"warning: the tuning database in {d} was measured {old}, these are {schedule_stamp()}: not using its "
          f"records, tuning starts afresh; the old database is kept in {aside}", file=sys.stderr, flush=True)
    return aside


@dataclass(frozen=True)
class Job:
    """A tuning call in progress: its tasks, its trial budget and the trials measured so far."""

    id: str
    tasks: tuple[str, ...]
    trials: int
    measured: int      # trials measured by earlier, interrupted calls of the same tasks


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _jobs(d: Path) -> dict[str, dict]:
    path = d / JOBS
    if not path.exists():
        return {}
    try:
        jobs = fsio.read_json(path)
    except DamagedFile:
        raise EdgenasError(f"{path}: not valid JSON (the list of unfinished tunings is corrupted); delete it, "
                           f"and unfinished tunings start over") from None
    return jobs if isinstance(jobs, dict) else {}


def start_job(directory: str | os.PathLike, tasks: list[str], trials: int) -> Job:
    """Register a tuning of ``tasks`` with ``trials`` trials, taking over every unfinished job whose
    tasks are all among them and whose tuner is gone: their measured trials count toward this
    budget (the resume). A job of a tuner still running on this host is left to it."""
    import hashlib
    import socket

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    with _lock(d):
        jobs = _jobs(d)
        host = socket.gethostname()
        taken = [k for k, j in jobs.items() if set(j["tasks"]) <= set(tasks)
                 and not (j.get("host") == host and alive(int(j.get("pid", 0))))]
        measured = sum(int(jobs.pop(k)["measured"]) for k in taken)
        key = "\n".join(sorted(tasks)) + f"\n{host}:{os.getpid()}"
        job = Job(hashlib.sha256(key.encode()).hexdigest()[:16], tuple(sorted(tasks)), trials, measured)
        jobs[job.id] = {"tasks": list(job.tasks), "trials": trials, "measured": measured, "host": host, "pid": os.getpid()}
        fsio.write_json(d / JOBS, jobs)
    return job


def unfinished_tasks(directory: str | os.PathLike) -> set[str]:
    d = Path(directory)
    if not (d / JOBS).exists():
        return set()
    with _lock(d):
        return {t for j in _jobs(d).values() for t in j["tasks"]}


def count_trial(directory: str | os.PathLike, job: str) -> None:
    d = Path(directory)
    with _lock(d):
        jobs = _jobs(d)
        if job in jobs:
            jobs[job]["measured"] = int(jobs[job]["measured"]) + 1
            fsio.write_json(d / JOBS, jobs)


def finish_job(directory: str | os.PathLike, job: str) -> None:
    d = Path(directory)
    with _lock(d):
        jobs = _jobs(d)
        if jobs.pop(job, None) is not None:
            if jobs:
                fsio.write_json(d / JOBS, jobs)
            else:
                (d / JOBS).unlink()


def _checked_lines(path: Path, n_workloads: int | None = None) -> list[str]:
    """``path``'s complete lines, each checked to parse; a torn last line (an append cut short)
    is dropped as ``merge`` drops it, and any other bad line is named with what to do."""
    import json

    lines = _lines(path)
    for no, line in enumerate(lines, 1):
        try:
            value = json.loads(line)
            ok = isinstance(value, list) and len(value) == 2
            if ok and n_workloads is not None:  # a record: [workload index, record]
                ok = isinstance(value[0], int) and 0 <= value[0] < n_workloads
        except ValueError:
            ok = False
        if not ok:
            raise EdgenasError(f"{path}: line {no} is not a MetaSchedule {'record' if n_workloads is not None else 'workload'} "
                               f"(the file is corrupted); delete that line, or the tuning database "
                               f"{path.parent}, and those tasks are tuned again")
    return lines


def load(directory: str | os.PathLike, module_equality: str):
    """A MetaSchedule database holding the best record per workload of the shared DB, or ``None``.

    Returns ``(database, n_records)``. The files are snapshotted under the lock and loaded from
    the copy: ``JSONDatabase`` appends to (and with ``allow_missing`` creates) the files it was
    opened on, and the shared files must only ever be written by ``merge``. The snapshot holds the
    checked complete lines only (``_checked_lines``): MetaSchedule's own loader fails on a torn
    line with a parser error that names no file.
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
            workloads = _checked_lines(d / WORKLOADS)
            records = _checked_lines(d / RECORDS, len(workloads))
        for name, lines in ((WORKLOADS, workloads), (RECORDS, records)):
            (snap / name).write_text("".join(ln + "\n" for ln in lines))
        try:
            full = ms.database.JSONDatabase(work_dir=str(snap), allow_missing=False, module_equality=module_equality)
        except Exception as e:  # noqa: BLE001 - TVM's parser errors carry no file name
            raise EdgenasError(f"{d}: MetaSchedule cannot load this tuning database ({str(e).strip().splitlines()[-1][:160]}); "
                               f"move the folder aside and the tasks are tuned again") from None
        best = ms.database.MemoryDatabase(module_equality=module_equality)
        full.dump_pruned(best)
        return best, len(full)
    finally:
        shutil.rmtree(snap, ignore_errors=True)
