"""A run directory: the artifacts of one build, its completed stages, and an exclusive lock.

``state.json`` records which stages finished (each stage writes its outputs atomically *before*
it is marked), and the build configuration. ``--resume`` skips finished stages and continues the
interrupted one from its checkpoint; resuming with a different configuration is refused, and so
is a second build writing into the same directory while the first holds the lock.

This module is the one place that knows the directory's file names (docs/architecture.md §6).
The build writes through ``RunDir(path).open(...)``; every reader (bundle, report, measure,
bench, the CLI) opens it with ``RunDir.read(path)``, which checks that it is a run directory at
all — and, with ``finished=True``, a finished one — in one way with one message, and never
creates or locks anything.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from filelock import FileLock, Timeout

from .. import fsio
from ..errors import DamagedFile, UsageError, register_damaged_hint

STATE = "state.json"
MANIFEST = "manifest.json"
ARCH = "arch.json"
OP_TABLE = "op_table.json"
LATENCY = "latency.json"
TIMING = "timing.json"
COMPUTE = "compute.json"
JOURNAL = "measurements.jsonl"
SPACE = "space.json"
STAGE_TABLES = "stage_tables.json"
EARLIER_POINTS = "earlier_points.json"
HELDOUT = "heldout.json"               # the feedback loop's held-out measured candidates (docs/latency.md)
REFERENCE = "reference.json"           # the reference library's arch, hash and calibrated time
REFERENCE_LIB = "reference.so"
MODEL_FP32_ONNX = "model_fp32.onnx"
MODEL_INT8_ONNX = "model_int8.onnx"
SUPERNET = "supernet.pt"          # a multi-target build's shared supernet (its training checkpoint)
MULTI = "multi.json"              # a multi-target build's fronts, cross-target latencies and cost

register_damaged_hint(STATE, "the run's progress record is damaged: start the run again in a new --out (or delete this run directory)")
register_damaged_hint(MANIFEST, f"rerun the same build with --resume, which writes {MANIFEST} again")


def library_name(target_name: str) -> str:
    """The compiled library of a run (and of a bundle) for one target."""
    return f"model_{target_name}.so"


def read_state(path: Path) -> dict:
    """``state.json``, checked to be what ``RunDir`` writes (or a ``DamagedFile`` naming it)."""
    state = fsio.read_json(path)
    if not (isinstance(state, dict) and isinstance(state.get("config"), dict) and isinstance(state.get("completed"), dict)):
        raise DamagedFile(path, "not an edgenas run state (expected an object with config and completed)")
    return state


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = FileLock(str(self.path / ".lock"))

    @classmethod
    def read(cls, path: str | Path, finished: bool = False) -> "RunDir":
        """An existing run directory, for reading: ``UsageError`` naming the path when it holds
        no edgenas run (no ``state.json``) or, with ``finished``, no finished one (no manifest)."""
        run = cls(path)
        if finished and not (run.path / MANIFEST).is_file():
            hint = "finish it with `edgenas build --resume`" if (run.path / STATE).is_file() else "pass a run directory"
            raise UsageError(f"{run.path} holds no finished edgenas run (no {MANIFEST})", hint=hint)
        if not (run.path / STATE).is_file():
            raise UsageError(f"{run.path}: not an edgenas run directory (no {STATE})")
        return run

    # -- paths ---------------------------------------------------------------------------------
    def file(self, *parts: str) -> Path:
        """``path/parts`` with its parent created (for writing)."""
        p = self.path.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def join(self, *parts: str) -> Path:
        """``path/parts`` (for reading: nothing is created)."""
        return self.path.joinpath(*parts)

    @property
    def state_file(self) -> Path:
        return self.path / STATE

    @property
    def manifest_file(self) -> Path:
        return self.path / MANIFEST

    @property
    def arch_file(self) -> Path:
        return self.path / ARCH

    @property
    def journal_file(self) -> Path:
        return self.path / JOURNAL

    def library(self, target_name: str) -> Path:
        return self.path / library_name(target_name)

    def round_file(self, r: int, name: str) -> Path:
        return self.path / "rounds" / f"r{r}" / name

    # -- typed reads ---------------------------------------------------------------------------
    def manifest(self):
        """The run's ``Manifest`` record."""
        from .. import records
        from .manifest import Manifest

        return records.load(self.manifest_file, Manifest)

    def arch(self):
        """The chosen architecture (``space.arch.Arch``)."""
        from .. import records
        from ..space.arch import Arch

        return records.load(self.arch_file, Arch)

    def input_shape(self) -> tuple[int, ...]:
        return self.arch().input_shape

    # -- lifecycle -----------------------------------------------------------------------------
    def open(self, config: dict, resume: bool) -> "RunDir":
        state_file = self.state_file
        if self.path.exists() and any(self.path.iterdir()) and not resume:
            if state_file.exists():
                raise UsageError(f"{self.path} already holds a run; pass --resume to continue it or choose another --out")
            raise UsageError(f"{self.path} is not empty and holds no edgenas run; choose another --out")
        if resume and state_file.exists():
            read_state(state_file)  # a damaged state is named before anything (the lock file) is written
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            raise UsageError(f"another edgenas build is writing to {self.path}; wait for it or choose another --out") from None
        if resume and state_file.exists():
            old = read_state(state_file)["config"]
            if old != json.loads(json.dumps(config)):
                diff = sorted(k for k in set(old) | set(config) if old.get(k) != json.loads(json.dumps(config)).get(k))
                self.close()
                raise UsageError(f"{self.path} was started with a different configuration ({', '.join(diff)}); resume with the same options")
        else:
            fsio.write_json(state_file, {"config": config, "completed": {}, "created": time.time()})
        return self

    def close(self) -> None:
        if self._lock.is_locked:
            self._lock.release()

    def __enter__(self) -> "RunDir":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- stage bookkeeping ---------------------------------------------------------------------
    def state(self) -> dict:
        return read_state(self.state_file)

    def done(self, stage: str) -> bool:
        return stage in self.state()["completed"]

    def info(self, stage: str) -> dict:
        return self.state()["completed"][stage]

    def completed(self) -> dict:
        return self.state()["completed"]

    def mark(self, stage: str, **info) -> None:
        state = self.state()
        state["completed"][stage] = {"at": time.time(), **info}
        fsio.write_json(self.state_file, state)

    def config(self) -> dict:
        return self.state()["config"]
