"""A run directory: the artifacts of one build, its completed stages, and an exclusive lock.

``state.json`` records which stages finished (each stage writes its outputs atomically *before*
it is marked), and the build configuration. ``--resume`` skips finished stages and continues the
interrupted one from its checkpoint; resuming with a different configuration is refused, and so
is a second build writing into the same directory while the first holds the lock.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from filelock import FileLock, Timeout

from .. import fsio
from ..errors import DamagedFile, UsageError


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

    def file(self, *parts: str) -> Path:
        p = self.path.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    # -- lifecycle ---------------------------------------------------------------------------
    def open(self, config: dict, resume: bool) -> "RunDir":
        state_file = self.path / "state.json"
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

    # -- stage bookkeeping ------------------------------------------------------------------
    def _state(self) -> dict:
        return read_state(self.path / "state.json")

    def done(self, stage: str) -> bool:
        return stage in self._state()["completed"]

    def info(self, stage: str) -> dict:
        return self._state()["completed"][stage]

    def mark(self, stage: str, **info) -> None:
        state = self._state()
        state["completed"][stage] = {"at": time.time(), **info}
        fsio.write_json(self.path / "state.json", state)

    def config(self) -> dict:
        return self._state()["config"]
