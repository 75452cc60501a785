"""Run and time a compiled library on this machine with TVM's VM and time evaluator."""

from __future__ import annotations

import os
import platform
import socket

import numpy as np

from .stats import LatencyStats


def _vm(lib_path: str):
    import tvm
    from tvm import relax

    dev = tvm.cpu()
    return relax.VirtualMachine(tvm.runtime.load_module(str(lib_path)), dev), dev


def run_local(lib_path: str, x: np.ndarray) -> np.ndarray:
    """Outputs for a batch ``x`` (run one sample at a time: libraries are compiled for batch 1)."""
    import tvm

    vm, dev = _vm(lib_path)
    outs = [vm["main"](tvm.runtime.tensor(x[i : i + 1], dev)).numpy() for i in range(len(x))]
    return np.concatenate(outs)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure_local(lib_path: str, input_shape: tuple[int, ...], repeat: int = 30, min_repeat_ms: int = 20,
                  threads: int | None = None) -> LatencyStats:
    """Median/p90 over ``repeat`` timed repeats after a warm-up; each repeat runs long enough
    (``min_repeat_ms``) that timer resolution does not matter."""
    import tvm

    vm, dev = _vm(lib_path)
    x = tvm.runtime.tensor(np.random.default_rng(0).standard_normal(input_shape).astype("float32"), dev)
    vm["main"](x)  # warm-up: first call allocates
    timer = vm.time_evaluator("main", dev, number=1, repeat=repeat, min_repeat_ms=min_repeat_ms)
    res = timer(x)
    threads = threads or int(os.environ.get("TVM_NUM_THREADS", os.cpu_count() or 1))
    # time_evaluator adjusts ``number`` to meet min_repeat_ms; results are per-run means per repeat.
    return LatencyStats.from_samples([r * 1e3 for r in res.results], number=-1, threads=threads,
                                     where=f"local:{socket.gethostname()}", device=cpu_name())
