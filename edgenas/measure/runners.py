"""One runner per way of reaching a device: this CPU, a device farm, qemu-user, or none.

Every caller that measures or runs a compiled library (the build's stages, the regression gate,
``edgenas measure`` / ``compile --tracker``, the bundle, ``edgenas verify``) asks
:func:`runner_for` instead of choosing itself, so the choice is made in one place from the
target's data (docs/architecture.md §4):

| runner         | when                                              | measure | run |
|----------------|---------------------------------------------------|---------|-----|
| ``FarmRunner`` | a farm (``--tracker``) was given                  | yes     | yes |
| ``LocalRunner``| a CPU target of this host's architecture           | yes     | yes |
| ``QemuRunner`` | an aarch64 CPU target on another host (numerics)   | no      | yes |
| ``NoRunner``   | anything else (CUDA without a GPU, foreign arches) | no      | no  |

Every measurement goes through the measurement protocol (``protocol.py``) and, when ``journal``
is given, is appended to it; the journal is an argument of the call, never state of the runner.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np

from ..errors import UsageError
from .protocol import Measurement, Protocol

# CPU flags (/proc/cpuinfo) a library built for this -mcpu needs; unknown CPUs are assumed to run.
MCPU_FLAGS = {"haswell": ("avx2", "fma"), "skylake": ("avx2", "fma"), "znver3": ("avx2", "fma"),
              "skylake-avx512": ("avx512f",), "cascadelake": ("avx512f", "avx512_vnni"),
              "icelake-server": ("avx512f", "avx512_vnni"), "sapphirerapids": ("avx512f", "amx_int8"),
              # AVX-VNNI client CPUs (x86-avx-vnni): their {vex} vpdpbusd faults on an AVX-512 VNNI CPU without it
              "alderlake": ("avx2", "fma", "avx_vnni"), "raptorlake": ("avx2", "fma", "avx_vnni"),
              "meteorlake": ("avx2", "fma", "avx_vnni")}


def host_flags() -> set[str]:
    from ..target import host_cpu_flags

    return set(host_cpu_flags())


class Runner:
    """How one device is reached. ``where`` names it in records ("local", "rpc KEY", ...)."""

    where = ""

    def __init__(self, target: str, tvm_target: dict, arch: str):
        self.target, self.tvm_target, self.arch = target, tvm_target, arch

    def unavailable(self) -> str | None:
        """Why libraries cannot run here, or None when they can."""
        return None

    def measure(self, lib, shape, *, min_samples: int | None = None, protocol: Protocol | None = None,
                journal=None, reference=None) -> Measurement:
        """``lib`` timed with the protocol; with ``reference`` (a library of the same input shape)
        interleaved with it, the ratio in ``Measurement.reference``."""
        raise UsageError(f"target {self.target!r} cannot be measured here ({self.where}): pass --tracker HOST:PORT "
                         f"--key KEY of a device farm that serves it")

    def run(self, lib, x: np.ndarray) -> np.ndarray:
        raise UsageError(f"libraries for target {self.target!r} cannot run here: {self.unavailable()}")


class LocalRunner(Runner):
    """This CPU, with TVM's VM; the library's ``mcpu`` must be runnable here."""

    where = "local"

    @classmethod
    def here(cls, target: str, tvm_target: dict) -> "LocalRunner":
        """This host's CPU for a library of ``target`` whose architecture is this host's."""
        return cls(target, tvm_target, platform.machine())

    def unavailable(self) -> str | None:
        if platform.machine() != self.arch:
            return f"this host is {platform.machine()}, the library is {self.arch}"
        mcpu = self.tvm_target.get("mcpu", "")
        lacking = [f for f in MCPU_FLAGS.get(mcpu, ()) if f not in host_flags()]
        return f"this CPU lacks {', '.join(lacking)} (needed by mcpu={mcpu})" if lacking else None

    def measure(self, lib, shape, *, min_samples=None, protocol=None, journal=None, reference=None) -> Measurement:
        from .protocol import measure_here

        return measure_here(lib, shape, protocol, min_samples=min_samples, target=self.target, journal=journal,
                            reference=reference)

    def run(self, lib, x):
        from .local import run_local

        return run_local(os.fspath(lib), x)


class QemuRunner(Runner):
    """aarch64 libraries under qemu-user on another host: numerics only, emulated time means nothing."""

    where = "qemu-aarch64"

    def unavailable(self) -> str | None:
        from . import aarch64_check

        missing = aarch64_check.missing_tools()
        return f"needs {', '.join(missing)}: run scripts/setup_cross" if missing else None

    def run(self, lib, x):
        from . import aarch64_check

        return aarch64_check.run_aarch64_library(Path(lib), x)


class NoRunner(Runner):
    """Compile-only here (CUDA without a GPU, or an architecture this host cannot run)."""

    where = "compile only"

    def unavailable(self) -> str | None:
        if self.tvm_target.get("kind") == "cuda":
            return "cannot execute without a GPU"
        return f"this host is {platform.machine()}, the library is {self.arch}"


class FarmRunner(Runner):
    """A device of a TVM RPC farm (``rpc.Farm``): measured and run there."""

    def __init__(self, farm):
        super().__init__(farm.target, {}, "")
        self.farm = farm
        self.where = f"rpc {farm.key}"

    def measure(self, lib, shape, *, min_samples=None, protocol=None, journal=None, reference=None) -> Measurement:
        return self.farm.measurement(lib, shape, min_samples, protocol, journal=journal, reference=reference)

    def run(self, lib, x):
        return self.farm.run(lib, x)


def device_runner(target: str, tvm_target: dict, arch: str) -> Runner:
    """The runner for a library built for ``tvm_target`` on a CPU of ``arch``, on this host."""
    if tvm_target.get("kind") == "cuda":
        return NoRunner(target, tvm_target, arch)
    if arch == platform.machine():
        return LocalRunner(target, tvm_target, arch)
    if arch == "aarch64":
        return QemuRunner(target, tvm_target, arch)
    return NoRunner(target, tvm_target, arch)


def runner_for(spec, farm=None) -> Runner:
    """The runner for ``spec`` (a ``TargetSpec``): the farm when one is given, else this host's way."""
    if farm is not None:
        return FarmRunner(farm)
    return device_runner(spec.name, spec.tvm_target, spec.arch)
