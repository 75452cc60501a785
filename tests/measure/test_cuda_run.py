"""The runtime-only CUDA runner builds on this GPU-less host and fails readably without a GPU;
on a GPU host ``edgenas verify`` runs a CUDA bundle through it (tests/bundle/test_bundle.py)."""

from __future__ import annotations

import os
import subprocess

import pytest

from edgenas.measure import cuda_run
from edgenas.target import get_target


def test_the_cuda_runner_builds_and_needs_only_the_runtime(tmp_path):
    runner = cuda_run.build_runner()
    assert runner.is_file() and os.access(runner, os.X_OK)
    assert cuda_run.build_runner() == runner   # keyed by its source: built once
    names = [p.name for p in cuda_run.runtime_files()]
    assert names[:3] == ["libtvm_runtime.so", "libtvm_runtime_cuda.so", "libtvm_ffi.so"]
    assert not any("compiler" in n for n in names)   # no TVM compiler on the GPU host
    usage = subprocess.run([str(runner)], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage: run_cuda" in usage.stderr
    if cuda_run.gpu_present():
        pytest.skip("a GPU host: the bundle test runs a real library")
    (tmp_path / "x.f32").write_bytes(b"\0" * 16)
    with pytest.raises(Exception, match="the CUDA run failed: run_cuda: cannot load the TVM CUDA runtime"):
        cuda_run.run_cuda_library(tmp_path / "missing.so", __import__("numpy").zeros((1, 1, 2, 2), "float32"))


def test_the_hopper_target_sits_beside_the_ampere_one():
    sm90, sm80 = get_target("cuda-sm90"), get_target("cuda-sm80")
    assert sm90.tvm_target["arch"] == "sm_90" and sm80.tvm_target["arch"] == "sm_80"
    assert sm90.tvm_target["kind"] == sm80.tvm_target["kind"] == "cuda"
