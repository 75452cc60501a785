"""How loaded the machine was while a latency was measured, recorded beside the number.

Why: on a shared CPU the same library measures tens of percent slower while a neighbour runs
(docs/measurement.md), and a latency without its load cannot be told apart from a regression.
Each local measurement therefore records the 1-minute load average, the CPU clock where the OS
exposes it, and the share of the machine's CPU that *other* processes used during the
measurement (system busy time minus this process's own, from ``psutil``). The last one is the
direct signal: the load average lags by a minute and counts this process's own thread.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

from ..records import record

BUSY_SHARE = 0.2   # other processes used at least this share of all cores: the number is suspect


@record("machine_load")
@dataclass(frozen=True)
class MachineLoad:
    load_1min: float
    cpu_mhz: float | None      # current clock (mean over cores); None where the OS does not expose it
    other_cpu_share: float     # other processes' CPU time / (wall time x cores) during the measurement
    cores: int
    seconds: float             # how long the measurement was watched
    steal_share: float | None = None   # hypervisor steal / all CPU time during the measurement (/proc/stat); None: not exposed

    @property
    def busy(self) -> bool:
        return self.other_cpu_share >= BUSY_SHARE

    def describe(self) -> str:
        mhz = f", {self.cpu_mhz:.0f} MHz" if self.cpu_mhz else ""
        steal = f", steal {self.steal_share:.1%}" if self.steal_share else ""
        return (f"load {self.load_1min:.2f} on {self.cores} cores, others used {self.other_cpu_share:.0%} of the CPU"
                f"{steal}{mhz}")


def cpu_mhz() -> float | None:
    import psutil

    try:
        f = psutil.cpu_freq()
    except (OSError, NotImplementedError, RuntimeError):
        f = None
    return float(f.current) if f is not None and f.current else None


class LoadWatch:
    """Start watching at construction; ``finish()`` returns the ``MachineLoad`` of the interval."""

    def __init__(self):
        import psutil

        self._proc = psutil.Process()
        self._t0, self._busy0, self._own0 = time.monotonic(), self._system_busy(), self._own()
        self._stat0 = proc_stat()

    @staticmethod
    def _system_busy() -> float:
        import psutil

        t = psutil.cpu_times()
        return sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)

    def _own(self) -> float:
        t = self._proc.cpu_times()
        return t.user + t.system + t.children_user + t.children_system

    def finish(self) -> MachineLoad:
        import psutil

        wall = max(time.monotonic() - self._t0, 1e-6)
        cores = psutil.cpu_count() or 1
        others = (self._system_busy() - self._busy0) - (self._own() - self._own0)
        share = min(max(others / (wall * cores), 0.0), 1.0)
        steal = steal_share(self._stat0, proc_stat())
        return MachineLoad(round(os.getloadavg()[0], 2), cpu_mhz(), round(share, 3), cores, round(wall, 3),
                           None if steal is None else round(steal, 4))


# -- per-window interference: steal (/proc/stat) and run-queue wait (/proc/PID/task/*/schedstat) --
def proc_stat() -> dict[int, tuple[int, int]]:
    """Per logical CPU: (all ticks, steal ticks) from ``/proc/stat`` ({} where it does not exist)."""
    out = {}
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("cpu") and line[3:4].isdigit():
                    name, *vals = line.split()
                    ticks = [int(v) for v in vals[:8]]
                    out[int(name[3:])] = (sum(ticks), ticks[7] if len(ticks) > 7 else 0)
    except OSError:
        pass
    return out


def steal_share(before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]],
                cpus: tuple[int, ...] | None = None) -> float | None:
    """Share of the CPUs' time (all of them, or ``cpus``) the hypervisor stole between two snapshots.
    Ticks are 10 ms, so over a short window one stolen tick is a large share: that window *was*
    disturbed."""
    cpus = tuple(before) if cpus is None else cpus
    total = sum(after[c][0] - before[c][0] for c in cpus if c in before and c in after)
    steal = sum(after[c][1] - before[c][1] for c in cpus if c in before and c in after)
    return None if not before else (steal / total if total > 0 else 0.0)


def sched_counts(pids: tuple[int, ...]) -> tuple[int, int] | None:
    """(run-queue wait in ns, involuntary context switches) summed over every thread of ``pids``.

    The wait (schedstat's second field) says how long the measuring threads were runnable but had
    no CPU; each involuntary switch is one preemption, which disturbs at most one sample. Both are
    the direct signal that a neighbour took the measured core. None where the kernel hides them."""
    wait, switches, seen = 0, 0, False
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    wait += int(f.read().split()[1])
                with open(f"/proc/{pid}/task/{tid}/status") as f:
                    switches += next(int(ln.split()[1]) for ln in f if ln.startswith("nonvoluntary_ctxt_switches"))
                seen = True
            except (OSError, IndexError, ValueError, StopIteration):
                continue
    return (wait, switches) if seen else None


@record("interference")
@dataclass(frozen=True)
class Interference:
    """What disturbed one measurement window (None: not observable from here, e.g. a remote server)."""

    steal_share: float | None     # hypervisor steal on the measured CPUs
    wait_share: float | None      # run-queue wait of the measuring threads / the window's wall time
    preemptions: int | None       # involuntary context switches of the measuring threads
    load_1min: float
    seconds: float


class WindowWatch:
    """Watch one window of a measurement that runs on ``cpus`` in the processes ``pids``."""

    def __init__(self, cpus: tuple[int, ...] | None, pids: tuple[int, ...]):
        self.cpus, self.pids = cpus, pids
        self._t0, self._stat0, self._sched0 = time.monotonic(), proc_stat() if cpus else {}, sched_counts(pids)

    def finish(self) -> Interference:
        wall = max(time.monotonic() - self._t0, 1e-9)
        steal = steal_share(self._stat0, proc_stat(), self.cpus) if self.cpus else None
        s0, s1 = self._sched0, sched_counts(self.pids)
        wait, preempted = (None, None) if s0 is None or s1 is None else (max(s1[0] - s0[0], 0) / 1e9 / wall, s1[1] - s0[1])
        return Interference(None if steal is None else round(steal, 4), None if wait is None else round(wait, 4),
                            preempted, round(os.getloadavg()[0], 2), round(wall, 4))


WARN_EVERY_S = 60.0
_last_warning = [float("-inf")]


def warn_if_busy(load: MachineLoad | None, what: str) -> bool:
    """One line on stderr when a measurement ran on a busy machine, at most once a minute (a build
    measures hundreds of op libraries; its summary counts the busy ones). Returns whether it warned."""
    now = time.monotonic()
    if load is None or not load.busy or now - _last_warning[0] < WARN_EVERY_S:
        return False
    _last_warning[0] = now
    print(f"warning: {what} was measured on a busy machine ({load.describe()}); "
          f"the latency may be inflated, re-measure when it is quiet", file=sys.stderr, flush=True)
    return True


__all__ = ["MachineLoad", "LoadWatch", "warn_if_busy", "cpu_mhz", "BUSY_SHARE", "Interference", "WindowWatch",
           "proc_stat", "steal_share", "sched_counts"]
