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

    @property
    def busy(self) -> bool:
        return self.other_cpu_share >= BUSY_SHARE

    def describe(self) -> str:
        mhz = f", {self.cpu_mhz:.0f} MHz" if self.cpu_mhz else ""
        return f"load {self.load_1min:.2f} on {self.cores} cores, others used {self.other_cpu_share:.0%} of the CPU{mhz}"


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
        return MachineLoad(round(os.getloadavg()[0], 2), cpu_mhz(), round(share, 3), cores, round(wall, 3))


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


__all__ = ["MachineLoad", "LoadWatch", "warn_if_busy", "cpu_mhz", "BUSY_SHARE"]
