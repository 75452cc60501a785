"""Measurements that hold on a shared host: per-core locks, the ratio to a reference, interference."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from edgenas import records
from edgenas.measure.context import Interference, WindowWatch
from edgenas.measure.cores import CoreSet, core_lock, lock_dir
from edgenas.measure.protocol import Measurement, Protocol, measure_here, time_interleaved
from edgenas.measure.rpc import Farm

from .conftest import TINY_SHAPE

QUICK = Protocol(min_samples=10, max_samples=30, min_windows=4, max_windows=12, window_samples=5)


class _Timer:
    """A stand-in for TVM's time evaluator whose per-run time follows the host's ``speed``."""

    def __init__(self, ms: float, host: dict):
        self.ms, self.host = ms, host

    def time_evaluator(self, name, dev, number=1, repeat=1, min_repeat_ms=0):
        def run(x):
            self.host["t"] += 1
            speed = 1.0 + 0.5 * np.sin(self.host["t"] / 3.0)      # the host drifts by ±50 %
            return type("R", (), {"results": [self.ms * speed / 1e3] * repeat, "mean": self.ms * speed / 1e3})()
        return run


class _Watch:
    """Every third window is preempted in most of its samples."""

    def __init__(self, seen: list):
        self.seen = seen

    def finish(self) -> Interference:
        self.seen.append(1)
        return Interference(0.0, 0.5, 9 if len(self.seen) % 3 == 0 else 0, 1.0, 0.01)


def test_the_ratio_cancels_drift_and_disturbed_windows_are_dropped():
    host, seen = {"t": 0}, []
    out, windows = time_interleaved(_Timer(0.3, host), _Timer(0.2, host), None, None, None,
                                    Protocol(min_windows=6, max_windows=12, window_samples=5), lambda: _Watch(seen))
    kept = [w for w in windows if not w.discarded]
    assert len(windows) == len(seen) and sum(w.discarded for w in windows) == len(windows) // 3
    absolute = [w.a_ms for w in kept]
    assert max(absolute) / min(absolute) > 1.1          # the absolute times drift...
    # ...the ratio much less: A and R are timed a few calls apart, so they see almost the same speed
    assert abs(np.median([w.ratio for w in kept]) - 1.5) < 0.15


def test_a_held_core_queues_another_process(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGENAS_CORE_LOCKS", str(tmp_path))
    probe = ("import sys; from edgenas.measure.cores import CoreSet, core_lock\n"
             "try:\n    with core_lock(CoreSet((0,)), wait_s=0.5): sys.exit(0)\n"
             "except Exception as e:\n    print(e); sys.exit(3)")
    with core_lock(CoreSet((0,))):
        held = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    free = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert held.returncode == 3 and "stayed busy" in held.stdout and free.returncode == 0
    assert lock_dir() == tmp_path and any(tmp_path.iterdir())


def test_measure_here_interleaved_with_a_reference(tiny_lib):
    m = measure_here(tiny_lib, TINY_SHAPE, QUICK, target="x86-avx2", reference=tiny_lib)
    ref = m.reference
    assert ref is not None and 4 <= len(ref.windows) <= 12 and 0 <= ref.discarded <= len(ref.windows)
    assert 0.8 < ref.ratio < 1.25 and ref.ratio_ci[0] <= ref.ratio <= ref.ratio_ci[1]   # the library against itself
    seen = ref.windows[0].interference
    assert seen.preemptions is not None and seen.wait_share is not None and seen.steal_share is not None
    assert m.cores.startswith("cpus ") and m.stats.context.steal_share is not None
    assert records.from_dict(records.to_dict(m), Measurement) == m


def test_a_loopback_server_is_measured_on_its_own_core_with_one_thread(loopback_farm, tiny_lib):
    loopback_farm.ensure(2)
    farm = Farm(loopback_farm.tracker, loopback_farm.key, target="x86-avx2", timeout_s=30, protocol=QUICK)
    m = farm.measurement(tiny_lib, TINY_SHAPE, reference=tiny_lib)
    assert m.cores.endswith("(1 physical core(s))") and m.threads == 1      # scripts/farm pins one core per server
    assert m.reference is not None and m.reference.windows[0].interference.preemptions is not None
    assert 0.8 < m.reference.ratio < 1.25


def test_window_watch_sees_this_process():
    w = WindowWatch((0,), (__import__("os").getpid(),))
    sum(i * i for i in range(200_000))
    seen = w.finish()
    assert seen.seconds > 0 and seen.preemptions is not None and 0 <= (seen.wait_share or 0) <= 1
