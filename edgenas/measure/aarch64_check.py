"""Numerical check of a cross-compiled aarch64 library on this x86 host, under qemu-user.

Why: a library for a Raspberry Pi or a Jetson host is built here, and CI has no ARM device. The
check runs the real aarch64 ``.so`` with the real aarch64 TVM runtime (from the
``manylinux_2_28_aarch64`` wheels of the same TVM version) through a ~100-line C++ VM runner
(``cpp/run_vm.cc``) under ``qemu-aarch64`` — about 0.2 s per call, against ~9 s for an emulated
aarch64 Python (docs/tvm.md §2). Only numerics come from here: emulated timings mean nothing,
ARM latency is always measured on a device.

The same tools, plus an emulated aarch64 Python with TVM, also run aarch64 TVM RPC servers for
the loopback farm (``scripts/farm start N --arch aarch64``, docs/farm.md): there timings are
taken, and every one of them is flagged ``emulated``.

Tools come from ``scripts/setup_cross``; the runner binary is (re)built on demand into the cache
directory, keyed by the hash of its source, so editing ``run_vm.cc`` never runs a stale binary.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from ..errors import EdgenasError, UsageError
from ..fsio import cache_root
from .cpp_build import build_cached

CACHE = cache_root() / "aarch64"
RUNTIME = CACHE / "site"  # unpacked aarch64 wheels: tvm/lib, tvm_ffi/lib
SYSROOT = Path("/usr/aarch64-linux-gnu")  # from g++-aarch64-linux-gnu; enough for qemu -L
SOURCE = Path(__file__).with_name("cpp") / "run_vm.cc"
EMULATED_PYTHON = CACHE / "python" / "bin" / "python3"  # qemu wrapper around Debian's arm64 CPython
RPC_EXTRA_LIB = CACHE / "python" / "site" / "tvm" / "lib" / "libtvm_runtime_extra.so"  # measuring needs its random fill
CXX = "aarch64-linux-gnu-g++"
QEMU = "qemu-aarch64"
_SETUP = "run scripts/setup_cross"


def missing_tools() -> list[str]:
    """What is missing for the check (empty when it can run); used by tests to skip."""
    missing = [t for t in (CXX, QEMU) if shutil.which(t) is None]
    if not (RUNTIME / "tvm" / "lib" / "libtvm_runtime.so").exists():
        missing.append(f"aarch64 TVM runtime in {RUNTIME}")
    if not SYSROOT.is_dir():
        missing.append(f"aarch64 sysroot {SYSROOT}")
    return missing


def _require_tools() -> None:
    missing = missing_tools()
    if missing:
        raise UsageError(f"the aarch64 check needs {', '.join(missing)}", hint=_SETUP)


def _ffi_include() -> Path:
    spec = importlib.util.find_spec("tvm_ffi")  # locate without importing (tvm_ffi imports torch)
    if spec is None or spec.origin is None:
        raise UsageError("the tvm_ffi package (apache-tvm-ffi) is not installed in this environment")
    return Path(spec.origin).parent / "include"


def build_runner() -> Path:
    """The aarch64 runner binary for the current ``run_vm.cc``, compiled if needed."""
    _require_tools()
    flags = ["-std=c++17", "-O2", f"-I{_ffi_include()}", f"-L{RUNTIME / 'tvm' / 'lib'}", f"-L{RUNTIME / 'tvm_ffi' / 'lib'}",
             "-Wl,--no-as-needed", "-ltvm_runtime", "-ltvm_ffi"]
    return build_cached(CXX, SOURCE, flags, CACHE, "run_vm", "the aarch64 VM runner")


def run_aarch64_library(lib_path: str | os.PathLike, inputs: np.ndarray) -> np.ndarray:
    """Outputs of the aarch64 library for a batch ``inputs`` (run one sample at a time, batch 1)."""
    runner = build_runner()
    x = np.ascontiguousarray(inputs, dtype=np.float32)
    sample_shape = (1, *x.shape[1:])
    libs = f"{RUNTIME / 'tvm' / 'lib'}:{RUNTIME / 'tvm_ffi' / 'lib'}"
    with tempfile.TemporaryDirectory(prefix="edgenas-a64-") as tmp:
        xin, xout = Path(tmp) / "x.f32", Path(tmp) / "y.f32"
        x.tofile(xin)
        cmd = [QEMU, "-L", str(SYSROOT), "-E", f"LD_LIBRARY_PATH={libs}", str(runner),
               str(Path(lib_path).resolve()), str(xin), ",".join(map(str, sample_shape)), str(xout)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise EdgenasError(f"{lib_path}: the aarch64 run failed under qemu: {r.stderr.strip()[-300:]}")
        shape_line = next(ln for ln in r.stdout.splitlines() if ln.startswith("shape "))
        out_shape = tuple(int(d) for d in shape_line.split()[1].split(","))
        return np.fromfile(xout, dtype=np.float32).reshape(len(x), *out_shape[1:])


def check_aarch64_library(lib_path: str | os.PathLike, inputs: np.ndarray, expected: np.ndarray,
                          atol: float) -> float:
    """Run ``lib_path`` on ``inputs`` under qemu and compare with ``expected``; returns max |err|.

    Raises ``UsageError`` (pointing at ``scripts/setup_cross``) when the tools are missing and
    ``EdgenasError`` when the outputs disagree by more than ``atol``.
    """
    out = run_aarch64_library(lib_path, inputs)
    if out.size != np.asarray(expected).size:
        raise EdgenasError(f"{lib_path}: aarch64 output shape {out.shape} != expected {np.shape(expected)}")
    err = float(np.max(np.abs(out - np.asarray(expected, dtype=np.float32).reshape(out.shape))))
    if not err <= atol:
        raise EdgenasError(f"{lib_path}: aarch64 output differs from the reference by {err:.3g} > atol {atol:g}")
    return err


def emulated_server_command() -> list[str]:
    """The command line prefix that runs TVM's RPC server as an aarch64 process under qemu-user
    (``scripts/farm --arch aarch64``): the emulated Python, ``-m tvm.exec.rpc_server``, and the
    runtime library with ``random_fill_for_measure``, which MetaSchedule's runner calls remotely."""
    if shutil.which(QEMU) is None or not EMULATED_PYTHON.is_file() or not RPC_EXTRA_LIB.is_file():
        raise UsageError(f"no emulated aarch64 Python in {EMULATED_PYTHON.parent.parent}", hint=_SETUP)
    return [str(EMULATED_PYTHON), "-m", "tvm.exec.rpc_server", "--load-library", str(RPC_EXTRA_LIB)]


if __name__ == "__main__":
    if sys.argv[1:] == ["--build-runner"]:
        print(build_runner())
    elif sys.argv[1:] == ["--server-command"]:
        try:
            print("\n".join(emulated_server_command()))
        except UsageError as e:
            sys.exit(f"error: {e}")
    else:
        sys.exit("usage: python -m edgenas.measure.aarch64_check --build-runner | --server-command")
