"""Run a compiled library on this machine with TVM's VM (timing: ``protocol.measure_here``)."""

from __future__ import annotations

import platform

import numpy as np


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

