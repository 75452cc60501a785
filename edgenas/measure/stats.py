"""Latency records: a distribution (median, p90, n), and where and how it was measured."""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass

import numpy as np

from ..records import record
from .context import MachineLoad


@record("latency_stats")
@dataclass(frozen=True)
class LatencyStats:
    median_ms: float
    p90_ms: float
    mean_ms: float
    std_ms: float
    n: int                 # timed repeats (each the mean of ``number`` runs)
    number: int
    threads: int
    where: str             # "local:<host>" or "rpc:<tracker>/<key>"
    device: str
    measured_at: float
    context: MachineLoad | None = None   # the machine's load during the measurement (None: not observable, e.g. a remote device)
    emulated: bool = False   # taken on an emulated device (an aarch64 server under qemu-user, docs/farm.md): not its speed

    @classmethod
    def from_samples(cls, samples_ms, number: int, threads: int, where: str, device: str | None = None,
                     context: MachineLoad | None = None, emulated: bool = False) -> "LatencyStats":
        s = np.asarray(samples_ms, dtype=np.float64)
        return cls(
            median_ms=float(np.median(s)),
            p90_ms=float(np.percentile(s, 90)),
            mean_ms=float(s.mean()),
            std_ms=float(s.std()),
            n=len(s),
            number=number,
            threads=threads,
            where=where,
            device=device or f"{platform.machine()} {platform.processor() or ''}".strip(),
            measured_at=time.time(),
            context=context,
            emulated=emulated,
        )
