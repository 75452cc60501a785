"""Which physical cores a measurement runs on, and a queue per core so that two never overlap.

Why (docs/measurement.md, "One measurement per core"): the servers of a loopback farm all live
on this host. Two of them pinned to the same physical core, or a local measurement beside a
server, would time each other's runs. Every measurement therefore holds one file lock per
physical core it runs on (taken in ascending order, so overlapping sets queue instead of
deadlocking), across processes: builds, benchmarks and ``edgenas measure`` queue alike.

Logical CPUs that share a physical core (SMT siblings) share one lock: the sibling's work slows
the measured thread as much as a neighbour on the same CPU would.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import EdgenasError

LOCK_WAIT_S = 600.0   # one measurement lasts seconds; a lock held longer than this is a hung holder


def physical_core(cpu: int) -> str:
    """``package:core`` of logical CPU ``cpu`` (from sysfs; the CPU number where it is absent)."""
    topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
    try:
        return f"{(topo / 'physical_package_id').read_text().strip()}-{(topo / 'core_id').read_text().strip()}"
    except OSError:
        return f"cpu{cpu}"


@dataclass(frozen=True)
class CoreSet:
    """The logical CPUs a measurement may run on and the physical cores they make up."""

    cpus: tuple[int, ...]

    @property
    def cores(self) -> tuple[str, ...]:
        return tuple(sorted({physical_core(c) for c in self.cpus}))

    def describe(self) -> str:
        return f"cpus {','.join(map(str, self.cpus))} ({len(self.cores)} physical core(s))"


def lock_dir() -> Path:
    """Shared by every process of this user on this host (the farm's servers are the user's)."""
    d = Path(os.environ.get("EDGENAS_CORE_LOCKS", Path(tempfile.gettempdir()) / f"edgenas-cores-{os.getuid()}"))
    d.mkdir(parents=True, exist_ok=True)
    return d


@contextlib.contextmanager
def core_lock(cores: CoreSet, wait_s: float = LOCK_WAIT_S):
    """Hold the lock of every physical core of ``cores`` (ascending) for the body."""
    from filelock import FileLock, Timeout

    with contextlib.ExitStack() as stack:
        for core in cores.cores:
            lock = FileLock(str(lock_dir() / f"core-{core}.lock"))
            try:
                stack.enter_context(lock.acquire(timeout=wait_s))
            except Timeout:
                raise EdgenasError(f"physical core {core} stayed busy with another measurement for {wait_s:.0f} s "
                                   f"(lock {lock.lock_file})") from None
        yield


def this_process_cores(threads: int) -> CoreSet:
    """The CPUs a local TVM pool of ``threads`` threads runs on: TVM binds its pool to the first
    cores of the process's affinity (docs/measurement.md)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    return CoreSet(tuple(cpus[:max(1, threads)]))


@dataclass(frozen=True)
class LocalServer:
    """A farm server that runs on this host: its listening process and the CPUs it may use."""

    pid: int
    cores: CoreSet


_LOOPBACK = ("127.", "localhost", "::1")
_found: dict[tuple[str, int], int] = {}   # (host, port) -> pid: scanning every socket costs ~0.1 s


def local_server(host: str, port: int) -> LocalServer | None:
    """The process of this host listening on ``host:port`` when ``host`` is loopback, else None
    (a remote server's cores cannot be seen from here)."""
    import psutil

    if not host.startswith(_LOOPBACK):
        return None
    pid = _found.get((host, port))
    if pid is not None:
        try:
            proc = psutil.Process(pid)
            if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in proc.net_connections(kind="tcp")):
                return LocalServer(pid, CoreSet(tuple(sorted(proc.cpu_affinity()))))
        except (psutil.Error, OSError):
            pass
        del _found[(host, port)]
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return None
    for c in conns:
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
            try:
                server = LocalServer(c.pid, CoreSet(tuple(sorted(psutil.Process(c.pid).cpu_affinity()))))
                _found[(host, port)] = c.pid
                return server
            except (psutil.Error, OSError):
                return None
    return None


__all__ = ["CoreSet", "LocalServer", "core_lock", "local_server", "physical_core", "this_process_cores"]
