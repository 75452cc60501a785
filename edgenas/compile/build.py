"""Phases 4–6: schedule (tuning DB + fallback), lower, ``tvm.compile`` and ``export_library``.

Everything target-specific comes from ``pipeline.backend(spec)``. The one piece of machinery
that lives here is the CUDA fatbin environment (TVM_NOTES.md §3): on a machine without a GPU
driver ``libtvm_runtime_cuda.so`` cannot load (no ``libcuda.so.1``), TVM's CUDA codegen then
falls back to storing CUDA *source*, and the library would need nvcc + Python TVM on the device.
Loading a stub ``libcuda.so.1`` (every call returns CUDA_ERROR_NO_DEVICE) before the CUDA
runtime, plus ``TVM_CUDA_COMPILE_MODE=nvcc`` and a ``Target`` scope, makes TVM call nvcc here and
embed a real ``sm_xx`` fatbin.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import EdgenasError
from . import pipeline

CACHE = Path(os.environ.get("EDGENAS_CACHE", Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgenas"))

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
    stub_dir = CACHE / "cuda-stub"
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


def build(fused_mod, spec, out_path: str | os.PathLike, database=None) -> tuple[Path, list[str]]:
    """Compile the fused module for ``spec`` (with ``database`` applied if given) and export it.

    Returns the library path and the kernels whose tuning record could not be applied.

    The library is exported into a temporary directory beside ``out_path`` and renamed into place,
    so an interrupted build never leaves a truncated ``.so`` where a good one is expected.
    """
    import tvm

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tgt = spec.tvm()
    skipped: list[str] = []
    with pipeline.build_env(spec), tgt, tvm.transform.PassContext(opt_level=3):
        ex = tvm.compile(fused_mod, target=tgt, relax_pipeline=pipeline.schedule_and_lower(spec, database, skipped))
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=out_path.parent))
    try:
        lib = tmp / out_path.name
        ex.export_library(str(lib), fcompile=pipeline.fcompile(spec))
        os.replace(lib, out_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_path, skipped
