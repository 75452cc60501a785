"""Run a CUDA library on a GPU with the TVM runtime only: the ``cpp/run_cuda.cc`` runner.

Why: a GPU host should not need the full TVM wheel (its compiler is ~250 MiB) to execute and
time a bundle's library. The runner links ``libtvm_runtime.so`` / ``libtvm_ffi.so`` and loads
``libtvm_runtime_cuda.so`` (which links the CUDA runtime), runs the stored test vectors on
``cuda:0`` and times ``main`` with a stream synchronisation per call (docs/distributed.md,
"The CUDA library on a GPU"). It is built here with the host compiler, keyed by the hash of its
source like the aarch64 runner (``aarch64_check.py``); ``runtime_files`` lists what a GPU host
needs beside it.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..errors import EdgenasError, UsageError
from ..fsio import cache_root
from .cpp_build import build_cached

CACHE = cache_root() / "cuda-runner"
SOURCE = Path(__file__).with_name("cpp") / "run_cuda.cc"
CXX = "g++"


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)   # locate without importing (tvm imports its compiler)
    if spec is None or spec.origin is None:
        raise UsageError(f"the {name} package is not installed in this environment")
    return Path(spec.origin).parent


def runtime_files() -> list[Path]:
    """The shared libraries the runner needs on a GPU host (from the TVM wheels and CUDA)."""
    tvm_lib, ffi_lib = _package_dir("tvm") / "lib", _package_dir("tvm_ffi") / "lib"
    files = [tvm_lib / "libtvm_runtime.so", tvm_lib / "libtvm_runtime_cuda.so", ffi_lib / "libtvm_ffi.so"]
    out = subprocess.run(["ldd", str(files[1])], capture_output=True, text=True).stdout
    for line in out.splitlines():   # the CUDA runtime libtvm_runtime_cuda.so was linked against
        if "libcudart" in line and "=>" in line and "not found" not in line:
            files.append(Path(line.split("=>")[1].split("(")[0].strip()))
    return files


def build_runner() -> Path:
    """The runner binary for the current ``run_cuda.cc``, compiled if needed (no CUDA headers
    or GPU are needed to build it)."""
    if shutil.which(CXX) is None:
        raise UsageError(f"building the CUDA runner needs {CXX}")
    tvm_lib, ffi = _package_dir("tvm") / "lib", _package_dir("tvm_ffi")
    # rpath: the libraries next to the binary (a GPU host's copy), else the wheels it was built from
    flags = ["-std=c++17", "-O2", f"-I{ffi / 'include'}", f"-L{tvm_lib}", f"-L{ffi / 'lib'}", "-Wl,--no-as-needed",
             "-ltvm_runtime", "-ltvm_ffi", "-ldl", f"-Wl,-rpath,$ORIGIN:{tvm_lib}:{ffi / 'lib'}"]
    return build_cached(CXX, SOURCE, flags, CACHE, "run_cuda", "the CUDA runner")


def gpu_present() -> bool:
    """A CUDA driver with at least one device (checked through libcuda itself, not torch).

    In a process that compiled for CUDA, ``libcuda.so.1`` resolves to the stub driver that
    ``compile.cuda_env`` loads so that TVM's CUDA runtime links on a GPU-less host; the stub has no
    ``cuInit``, which means no GPU."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
        count = ctypes.c_int(0)
        return cuda.cuInit(0) == 0 and cuda.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0
    except (OSError, AttributeError):
        return False


def run_cuda_library(lib_path: str | os.PathLike, inputs: np.ndarray, repeat: int = 100,
                     runner: Path | None = None, lib_dir: Path | None = None) -> tuple[np.ndarray, dict]:
    """Outputs of the CUDA library for ``inputs`` (batch 1 each) and its latency
    ``{"median_ms", "p10_ms", "p90_ms", "n"}``; ``lib_dir`` holds ``runtime_files`` (default: the
    installed wheels)."""
    runner = runner or build_runner()
    x = np.ascontiguousarray(inputs, dtype=np.float32)
    dirs = [str(lib_dir)] if lib_dir else sorted({str(p.parent) for p in runtime_files()})
    env = {**os.environ, "LD_LIBRARY_PATH": ":".join(dirs + [os.environ.get("LD_LIBRARY_PATH", "")])}
    with tempfile.TemporaryDirectory(prefix="edgenas-cuda-") as tmp:
        xin, xout = Path(tmp) / "x.f32", Path(tmp) / "y.f32"
        x.tofile(xin)
        cmd = [str(runner), str(Path(lib_path).resolve()), str(xin), ",".join(map(str, (1, *x.shape[1:]))), str(xout),
               str(repeat)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
        if r.returncode != 0:
            raise EdgenasError(f"{lib_path}: the CUDA run failed: {r.stderr.strip()[-300:]}")
        lines = dict(ln.split(" ", 1) for ln in r.stdout.splitlines() if " " in ln)
        out_shape = tuple(int(d) for d in lines["shape"].split(","))
        med, p10, p90, n = lines["latency_ms"].split()
        return (np.fromfile(xout, dtype=np.float32).reshape(len(x), *out_shape[1:]),
                {"median_ms": float(med), "p10_ms": float(p10), "p90_ms": float(p90), "n": int(n)})


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--build-runner"]:
        print(build_runner())
    else:
        sys.exit("usage: python -m edgenas.measure.cuda_run --build-runner")
