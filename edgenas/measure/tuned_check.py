"""Keep a tuned library only where it runs the model faster than the default schedules.

Why: MetaSchedule times each kernel alone and keeps, per kernel, the schedule that measured
fastest there, the default schedule included (docs/tuning.md, "The default schedule is a
trial"). Whether those choices win inside the whole model is another question, and whole-model
benches on a shared host are too noisy to answer it after the fact (one run read a tuned
MobileNetV2-1.0 1.3x slower than untuned, the repeat level; docs/tuning.md, "The tuned library
is checked against the defaults"). So ``compile_onnx(..., keep_tuned=checker(...))`` builds both
and asks this module which one to ship: the two run interleaved, window by window
(``protocol.measure_here`` with a reference library), at the thread count the target deploys
with, and the tuned one is kept when its median window ratio is at most 1.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from .protocol import Protocol, measure_here


def deploy_threads(target) -> int:
    """The thread count a library for ``target`` (a ``TargetSpec``) runs with: its ``num-cores``."""
    import os

    return int(target.tvm_target.get("num-cores", os.cpu_count() or 1))


def checker(input_shape, target) -> Callable[[Path, Path], tuple[bool, str]]:
    """``keep_tuned`` for ``compile_onnx``: ``(tuned_lib, default_lib) -> (keep tuned?, why)``,
    measured on this host (only for a target measurable here) with ``input_shape``."""
    threads = deploy_threads(target)
    proto = dataclasses.replace(Protocol(), threads=threads)

    def keep_tuned(tuned: Path, default: Path) -> tuple[bool, str]:
        ref = measure_here(tuned, input_shape, proto, target=target.name, reference=default).reference
        keep = ref.ratio <= 1.0
        lo, hi = ref.ratio_ci
        return keep, (f"tuned library {ref.ratio:.2f}x the default schedules' latency at {threads} thread(s) "
                      f"(95 % interval {lo:.2f}-{hi:.2f}, {len(ref.windows)} interleaved windows): "
                      + ("tuned library kept" if keep else "default schedules kept"))

    return keep_tuned


__all__ = ["checker", "deploy_threads"]
