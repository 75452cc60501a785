"""Keep a tuned library only where it runs the model faster than the default schedules.

Why: MetaSchedule times each kernel alone and keeps, per kernel, the schedule that measured
fastest there, the default schedule included (docs/tuning.md, "The default schedule is a
trial"). Whether those choices win inside the whole model is another question: with 640 trials
the tuned MobileNetV2-1.0 and ResNet-18 ran slower than their untuned builds (docs/tuning.md,
"The tuned library is checked against the defaults"). So ``compile_onnx(..., keep_tuned=checker(...))`` builds both
and asks this module which one to ship: the two run interleaved, window by window
(``protocol.measure_here`` with a reference library), at the thread count the target deploys
with, and the tuned one is kept when its median window ratio is at most 1.

The timing runs in a child process started with ``TVM_NUM_THREADS``: TVM sizes its thread pool
once per process (cores / 2 on x86, where it assumes SMT: 1 thread on a 2-core host), and asking
the pool for more threads later does not grow it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

from ..errors import EdgenasError


# The check measures two libraries for a few seconds each; a child that runs this long is stuck.
CHECK_TIMEOUT_S = 900


def deploy_threads(target) -> int:
    """The thread count a library for ``target`` (a ``TargetSpec``) runs with: its ``num-cores``."""
    return int(target.tvm_target.get("num-cores", os.cpu_count() or 1))


def _compare(tuned: str, default: str, shape: list[int], threads: int, target: str) -> dict:
    """In the child: ``tuned`` interleaved with ``default`` (the reference) at ``threads``."""
    from .protocol import Protocol, measure_here

    m = measure_here(Path(tuned), tuple(shape), dataclasses.replace(Protocol(), threads=threads), target=target,
                     reference=Path(default))
    ref = m.reference
    return dict(ratio=ref.ratio, lo=ref.ratio_ci[0], hi=ref.ratio_ci[1], windows=len(ref.windows),
                threads=m.stats.threads)


def checker(input_shape, target) -> Callable[[Path, Path], tuple[bool, str]]:
    """``keep_tuned`` for ``compile_onnx``: ``(tuned_lib, default_lib) -> (keep tuned?, why)``,
    measured on this host (only for a target measurable here) with ``input_shape``."""
    threads = deploy_threads(target)

    def keep_tuned(tuned: Path, default: Path) -> tuple[bool, str]:
        job = dict(tuned=os.fspath(tuned), default=os.fspath(default), shape=list(input_shape), threads=threads,
                   target=target.name)
        try:
            r = subprocess.run([sys.executable, "-m", __name__, json.dumps(job)], capture_output=True, text=True,
                               env=dict(os.environ, TVM_NUM_THREADS=str(threads)), check=False, timeout=CHECK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise EdgenasError(f"timing the tuned library against the default schedules took over {CHECK_TIMEOUT_S} s "
                               f"({tuned}); rerun on a quiet machine (`edgenas compile --no-check-tuned` skips the check)") from None
        lines = r.stdout.strip().splitlines()
        if r.returncode != 0 or not lines:
            cause = (r.stderr.strip().splitlines() or ["no output"])[-1]
            raise EdgenasError(f"timing the tuned library against the default schedules failed: {cause}")
        d = json.loads(lines[-1])
        keep = d["ratio"] <= 1.0
        return keep, (f"tuned library {d['ratio']:.2f}x the default schedules' latency at {d['threads']} thread(s) "
                      f"(95 % interval {d['lo']:.2f}-{d['hi']:.2f}, {d['windows']} interleaved windows): "
                      + ("tuned library kept" if keep else "default schedules kept"))

    return keep_tuned


__all__ = ["checker", "deploy_threads"]

if __name__ == "__main__":
    print(json.dumps(_compare(**json.loads(sys.argv[1]))))
