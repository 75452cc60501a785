"""Cross targets: aarch64 libraries checked numerically under qemu-user (scripts/setup_cross
installs the tools; CI runs it), and CUDA libraries that carry a real sm_xx fatbin built here
without a GPU."""

from __future__ import annotations

import shutil
import struct

import numpy as np
import pytest

from edgenas.compile import compile_onnx
from edgenas.errors import UsageError
from edgenas.measure import aarch64_check
from edgenas.target import get_target

SHAPE = (1, 3, 16, 16)
FATBIN_MAGIC = b"\x50\xed\x55\xba"  # little-endian 0xBA55ED50, the fatbin container header
ELF_MACHINE = {"x86_64": 62, "aarch64": 183}

needs_qemu = pytest.mark.skipif(bool(aarch64_check.missing_tools()),
                                reason=f"missing {aarch64_check.missing_tools()}: run scripts/setup_cross")


def _ort_reference(path, x):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, {sess.get_inputs()[0].name: x[i:i + 1]})[0] for i in range(len(x))])


def _elf_machine(data: bytes) -> int:
    assert data[:4] == b"\x7fELF"
    return struct.unpack_from("<H", data, 18)[0]


def _fatbin_archs(data: bytes) -> set[int]:
    """SM numbers of the entries of the first fatbin in ``data``.

    Layout (CUDA fatbin container): 16-byte header {magic u32, version u16, header size u16,
    payload size u64}, then entries {kind u16, version u16, header size u32, payload size u64,
    ..., arch u32 at byte 28}.
    """
    start = data.index(FATBIN_MAGIC)
    _, _, hsize, size = struct.unpack_from("<IHHQ", data, start)
    pos, end, archs = start + hsize, start + hsize + size, set()
    while pos < end:
        _, _, ehsize, esize = struct.unpack_from("<HHIQ", data, pos)
        archs.add(struct.unpack_from("<I", data, pos + 28)[0])
        pos += ehsize + esize
    return archs


@needs_qemu
@pytest.mark.parametrize("target", ["rpi4", "rpi5"])
def test_aarch64_int8_library_matches_onnxruntime_under_qemu(target, ort_qdq_onnx, tmp_path):
    res = compile_onnx(ort_qdq_onnx, get_target(target), tmp_path / f"{target}.so", tuning_dir=tmp_path / "tl")
    data = (tmp_path / f"{target}.so").read_bytes()
    assert _elf_machine(data) == ELF_MACHINE["aarch64"] and res.int8_ops
    x = np.random.default_rng(1).standard_normal((4, *SHAPE[1:])).astype("float32")
    ref = _ort_reference(ort_qdq_onnx, x)
    err = aarch64_check.check_aarch64_library(res.library, x, ref, atol=1e-3 * np.abs(ref).max())
    assert err <= 1e-3 * np.abs(ref).max()


def test_aarch64_check_without_tools_says_how_to_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(aarch64_check, "RUNTIME", tmp_path / "no-runtime")
    with pytest.raises(UsageError, match="scripts/setup_cross"):
        aarch64_check.check_aarch64_library(tmp_path / "x.so", np.zeros(SHAPE, "float32"), np.zeros(1), atol=0)


@pytest.mark.parametrize("target", ["cuda-sm80", pytest.param("cuda-sm90", marks=pytest.mark.slow), "jetson-orin"])
def test_cuda_library_holds_a_fatbin_for_its_arch(target, ort_qdq_onnx, tmp_path):
    spec = get_target(target)
    if shutil.which("nvcc") is None or (spec.cross_compiler and shutil.which(spec.cross_compiler) is None):
        pytest.skip("needs nvcc (and the aarch64 cross compiler for jetson-orin: run scripts/setup_cross)")
    res = compile_onnx(ort_qdq_onnx, spec, tmp_path / "lib.so", tuning_dir=tmp_path / "tl")
    data = (tmp_path / "lib.so").read_bytes()
    assert _elf_machine(data) == ELF_MACHINE[spec.arch]  # the host side, cross-built for Jetson
    assert FATBIN_MAGIC in data and b"__global__" not in data  # machine code, not CUDA source
    assert _fatbin_archs(data) == {int(spec.tvm_target["arch"].removeprefix("sm_"))}
    assert res.int8_ops and not res.tuned
