"""The CUDA fatbin environment: build a real ``sm_XX`` fatbin on a host without a GPU driver.

On such a host ``libtvm_runtime_cuda.so`` cannot load (no ``libcuda.so.1``); TVM's CUDA codegen
then falls back to storing CUDA *source*, and the library would need nvcc and Python TVM on the
device. Loading a stub ``libcuda.so.1`` (every call returns CUDA_ERROR_NO_DEVICE) before the CUDA
runtime, plus ``TVM_CUDA_COMPILE_MODE=nvcc`` and a ``Target`` scope, makes TVM call nvcc here and
embed the machine code (docs/tvm.md, "CUDA without a GPU").
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
import tempfile
from pathlib import Path

from ..errors import EdgenasError
from ..fsio import cache_root

_CUDA_STUB_C = r"""
/* Just enough of the CUDA driver API for libtvm_runtime_cuda.so to load on a GPU-less host.
   Every call fails with CUDA_ERROR_NO_DEVICE (100): nothing here can run a kernel. */
int cuDeviceGetName(char *n, int l, int d) { return 100; }
int cuFuncSetAttribute(void *f, int a, int v) { return 100; }
int cuGetErrorName(int e, const char **s) { *s = "stub"; return 0; }
int cuGetErrorString(int e, const char **s) { *s = "stub"; return 0; }
int cuLaunchKernelEx(const void *c, void *f, void **p, void **x) { return 100; }
int cuModuleGetFunction(void **f, void *m, const char *n) { return 100; }
int cuModuleLoadData(void **m, const void *i) { return 100; }
int cuModuleUnload(void *m) { return 100; }
int cuTensorMapEncodeTiled(void) { return 100; }
"""


def _load_cuda_runtime() -> None:
    """Make sure ``libtvm_runtime_cuda.so`` is loaded, via the stub driver if there is no real one."""
    from tvm.base import _LOADED_LIBS
    from tvm_ffi.libinfo import load_lib_ctypes

    if "tvm_runtime_cuda" in _LOADED_LIBS:  # a real driver (GPU box) or an earlier call
        return
    stub_dir = cache_root() / "cuda-stub"
    stub = stub_dir / "libcuda.so.1"
    if not stub.exists():
        stub_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=stub_dir) as tmp:
            src, out = Path(tmp) / "cuda_stub.c", Path(tmp) / "libcuda.so.1"
            src.write_text(_CUDA_STUB_C)
            r = subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", str(src), "-o", str(out)],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise EdgenasError(f"could not build the CUDA stub driver with gcc: {r.stderr.strip()[:200]}")
            os.replace(out, stub)
    ctypes.CDLL(str(stub), mode=ctypes.RTLD_GLOBAL)  # resolves libcuda.so.1 by soname from now on
    runtime_dir = Path(_LOADED_LIBS["tvm_runtime"]._name).resolve().parent
    _LOADED_LIBS["tvm_runtime_cuda"] = load_lib_ctypes(package="tvm", target_name="tvm_runtime_cuda",
                                                       extra_lib_paths=[runtime_dir], mode="RTLD_LOCAL")


@contextlib.contextmanager
def _env(**values: str):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def cuda_fatbin_env(spec):
    """Around ``tvm.compile`` for CUDA targets: stub driver, nvcc mode, CUDA_PATH, Target scope."""
    _load_cuda_runtime()
    extra = {"TVM_CUDA_COMPILE_MODE": "nvcc"}
    # /usr/local/bin/nvcc may be a wrapper, so TVM's find_cuda_path() guesses /usr/local.
    if "CUDA_PATH" not in os.environ and Path("/usr/local/cuda/bin/nvcc").exists():
        extra["CUDA_PATH"] = "/usr/local/cuda"
    with _env(**extra), spec.tvm():
        yield
