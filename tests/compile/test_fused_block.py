"""The fused inverted-residual block experiment (scripts/bench_fused_block.py): its one-kernel
block and edgenas' three unfused kernels both equal the numpy model of the integer block bit for
bit (uint8 and int8 extremes planted, a channel count that is not a multiple of 16, bands of
unequal height), and the model's float32 fused multiply-add is the exactly rounded one."""

from __future__ import annotations

import importlib.util
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
HAS_VNNI = "avx512_vnni" in Path("/proc/cpuinfo").read_text()
vnni = pytest.mark.skipif(not HAS_VNNI, reason="this CPU has no AVX-512 VNNI")


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_fused_block", REPO / "scripts" / "bench_fused_block.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclass looks its module up there
    spec.loader.exec_module(mod)
    return mod


def test_fma_model_rounds_once(bench):
    """``_fma32`` against the exact rational ``a * s + b`` rounded once to float32 (nearest,
    ties to even), on values built to land on float32 midpoints after float64 rounding."""
    rng = np.random.default_rng(3)
    a = rng.integers(-2**21, 2**21, 4000).astype(np.float32)
    s = rng.uniform(1e-4, 1.0, 4000).astype(np.float32)
    b = rng.uniform(-300, 300, 4000).astype(np.float32)
    # odd products between 2^24 and 2^25 are float32 midpoints; a tiny b makes the float64 sum
    # inexact and rounded onto that midpoint (the case rounding twice gets wrong), b = 0 a true tie
    i, j = rng.integers(0, 200, (2, 1000))
    a[:1000], s[:1000] = 4097 + 2 * i, 4097 + 2 * j
    b[:1000] = rng.choice([-2.0**-40, 0.0, 2.0**-40], 1000)
    got = bench._fma32(a, s, b)
    assert not np.array_equal(got[:1000], (a[:1000].astype(np.float64) * s[:1000] + b[:1000]).astype(np.float32))
    for i in range(len(a)):
        exact = Fraction(float(a[i])) * Fraction(float(s[i])) + Fraction(float(b[i]))
        r = got[i]
        lo, hi = np.nextafter(r, np.float32(-np.inf)), np.nextafter(r, np.float32(np.inf))
        d = abs(Fraction(float(r)) - exact)
        assert d <= abs(Fraction(float(lo)) - exact) and d <= abs(Fraction(float(hi)) - exact)
        if d in (abs(Fraction(float(lo)) - exact), abs(Fraction(float(hi)) - exact)):  # a tie: the even one
            assert int(r.view(np.uint32)) & 1 == 0


@vnni
@pytest.mark.parametrize("shape, bands, lanes, dyadic", [
    ((5, 6, 24, 144), 1, 8, False),   # 24 channels: the projection's last group has 8
    ((5, 6, 24, 144), 3, 16, True),   # bands of 2, 2, 1 rows; ties to even in every requantize
    ((4, 4, 8, 48), 2, 8, True),      # one 8-channel group
], ids=["c24-1band", "c24-3bands-dw16-ties", "c8-2bands-ties"])
def test_fused_block_is_exact(bench, tmp_path, shape, bands, lanes, dyadic):
    P = bench.make_params(bench.Shape("t", *shape), seed=sum(shape), dyadic=dyadic)
    lib = bench.build(bench.fused_module(P, bands, lanes), tmp_path / "fused.so")
    assert np.array_equal(bench.run(lib, P["x"]), P["y"])
    asm = _disassembly(lib)
    if asm is not None:  # both GEMMs on vpdpbusd, the depthwise on vpmaddwd
        assert "vpdpbusd" in asm and "vpmaddwd" in asm


@vnni
def test_unfused_kernels_match_the_model(bench, tmp_path):
    """The baseline: the block as ``qdq_rewrite`` writes it, through ``pipeline.fuse`` (three
    kernels: the residual fuses into the projection) and the default schedules."""
    P = bench.make_params(bench.Shape("t", 5, 6, 24, 144), seed=1)
    spec = bench.vnni_spec()
    mod = bench.unfused_module(P, spec)
    names = bench.kernel_names(mod)
    assert len(names) == 3 and sum("packed_dot" in n for n in names) == 2 and sum("depthwise" in n for n in names) == 1
    assert np.array_equal(bench.run(bench.build(mod, tmp_path / "unfused.so", spec), P["x"]), P["y"])


def _disassembly(lib: Path) -> str | None:
    import shutil
    import subprocess

    if shutil.which("objdump") is None:
        return None
    return subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(lib)], capture_output=True, text=True).stdout
