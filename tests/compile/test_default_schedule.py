"""Default schedules (compile/default_schedule.py): every int8 kernel class gets one, and the
scheduled kernel is exact against a numpy model of the same integer arithmetic (int8 extremes,
odd shapes, padding, strides)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tvm
from tvm.s_tir import dlight as dl

from edgenas.compile import default_schedule, depthwise, packed_dot

from .irkit import NO_YMM_VNNI, avxvnni_mcpu

R = np.random.RandomState(7)
HAS_VNNI = "avx512_vnni" in Path("/proc/cpuinfo").read_text()
# x86-avx-vnni's ymm vpdpbusd runs here as the real target (alderlake, VEX) on an AVX-VNNI CPU, or
# in its EVEX form (the same LLVM intrinsic on ymm) for a CPU with AVX-512 VNNI + VL: the kernel,
# its packing and its register block are the same; only the instruction's encoding differs
AVXVNNI_MCPU = avxvnni_mcpu()
MCPU = {"avx2": "haswell", "narrow": "haswell", "vnni": "cascadelake", "avxvnni": AVXVNNI_MCPU}
VNNI = pytest.param("vnni", marks=pytest.mark.skipif(not HAS_VNNI, reason="this CPU has no AVX-512 VNNI"))
AVXVNNI = pytest.param("avxvnni", marks=pytest.mark.skipif(AVXVNNI_MCPU is None, reason=NO_YMM_VNNI))


INTRIN = {"avx2": "llvm.x86.avx2.pmadd.wd", "narrow": "llvm.x86.avx2.pmadd.ub.sw",
          "vnni": "llvm.x86.avx512.vpdpbusd.512", "avxvnni": "llvm.x86.avx512.vpdpbusd.256"}
# "narrow": the AVX2 target's pmaddubsw form, which the rewrite picks for a weight that fits it
FAMILY = {"avx2": "avx2", "narrow": "avx2", "vnni": "vnni", "avxvnni": "avxvnni"}


def _kernel(name: str) -> packed_dot.DotKernel:
    return packed_dot.KERNELS["avx2"].narrow if name == "narrow" else packed_dot.KERNELS[name]


def _weight(shape, kernel: str):
    """Symmetric int8 weights with the extremes planted; for the narrow form the extremes of
    the range it is exact on (+-64: every pair sum at its bound)."""
    w = _extreme(shape, "int8")
    w[w == -128] = -127
    if kernel == "narrow":
        w = np.clip(w, -64, 64)
        w.reshape(-1)[::3] = -64
        w.reshape(-1)[1::5] = 64
        assert packed_dot.fits(w, _kernel(kernel))
    return w


def _build(func, kernel: str, tensorized: bool = True):
    """The kernel with the default rules applied, compiled; asserts that edgenas' rule (not a
    generic fallback) scheduled it: threaded, and with the dot-product intrinsic for a GEMM."""
    packed_dot.register()
    tgt = tvm.target.Target({"kind": "llvm", "mcpu": MCPU[kernel], "num-cores": 2})
    mod = tvm.IRModule({"main": func.with_attr("global_symbol", "main")})
    with tgt:
        mod = dl.ApplyDefaultSchedule(*default_schedule.rules(packed_dot.KERNELS[FAMILY[kernel]]))(mod)
    script = mod["main"].script()
    assert mod["main"].attrs.get("tirx.is_scheduled", False) and "T.parallel" in script
    assert (INTRIN[kernel] in script) == tensorized
    return tvm.compile(mod, target=tgt)


def _call(lib, *arrays, out_shape):
    out = tvm.runtime.tensor(np.zeros(out_shape, "int32"))
    lib["main"](*(tvm.runtime.tensor(a) for a in arrays), out)
    return out.numpy()


def _extreme(shape, dtype):
    """Random values with the type's extremes planted in them."""
    info = np.iinfo(dtype)
    x = R.randint(info.min, info.max + 1, shape).astype(dtype)
    flat = x.reshape(-1)
    flat[::3], flat[1::5] = info.min, info.max
    return x


@pytest.mark.parametrize("kernel", ["avx2", "narrow", VNNI, AVXVNNI])
@pytest.mark.parametrize("shape, dtype, out", [((35, 6), "int8", 20), ((9, 16), "uint8", 48), ((9, 12), "uint8", 10)],
                         ids=["odd-int8", "uint8", "matmul"])
def test_packed_gemm_default_schedule_is_exact(kernel, shape, dtype, out):
    k = _kernel(kernel)
    x, w = _extreme(shape, dtype), _weight((out, shape[1]), kernel)
    lib = _build(packed_dot.packed_dot_func(shape, dtype, out, k), kernel)
    got = _call(lib, x, packed_dot.pack_weight(w, k), out_shape=(shape[0], out))
    xu = x.astype(np.int64) + (128 if dtype == "int8" else 0)  # the kernel's uint8 operand
    assert np.array_equal(got, xu @ w.T.astype(np.int64))


@pytest.mark.parametrize("kernel", ["avx2", "narrow", VNNI, AVXVNNI])
@pytest.mark.parametrize("shape, dtype, zero, k, stride, pad", [
    ((1, 5, 7, 6), "int8", -128, (3, 3), (1, 1), (1, 1, 1, 1)),
    ((1, 3, 11, 9), "uint8", 201, (7, 7), (2, 2), (3, 3, 3, 3)),   # a stem: 3 channels padded to K
    ((1, 8, 5, 5), "uint8", 3, (1, 1), (2, 2), (0, 0, 0, 0)),      # a strided 1x1 (ResNet's shortcut)
    ((1, 16, 3, 5), "uint8", 9, (1, 1), (1, 1), (0, 0, 0, 0)),     # a 1x1 reading its input as it is
    ((1, 8, 4, 4), "int8", -5, (1, 1), (1, 1), (0, 0, 0, 0)),      # int8: only the + 128 pass
    # the maps above are small beside their weights (tiles channel block first: weights_outer);
    # these two are large beside them (pixel first)
    ((1, 4, 20, 20), "uint8", 7, (3, 3), (1, 1), (1, 1, 1, 1)),
    ((1, 4, 9, 10), "uint8", 250, (1, 1), (1, 1), (0, 0, 0, 0)),
], ids=["3x3-int8", "7x7-s2-stem", "1x1-s2", "1x1-direct", "1x1-int8", "3x3-wide-map", "1x1-wide-map"])
def test_dense_conv_gemm_default_schedule_is_exact(kernel, shape, dtype, zero, k, stride, pad):
    """``conv_dot_func`` channels-last (x NHWC in, NHWC out) against a numpy NCHW conv."""
    kern = _kernel(kernel)
    n, ch, h, wd = shape
    func, out_shape = packed_dot.conv_dot_func((n, h, wd, ch), dtype, 20, kern, k, stride, pad, zero)
    x, w = _extreme(shape, dtype), _weight((20, ch, *k), kernel)
    got = _call(_build(func, kernel), x.transpose(0, 2, 3, 1).copy(), packed_dot.pack_conv_weight(w, kern),
                out_shape=out_shape)
    zu = packed_dot.gemm_zero(dtype, zero)
    xu = x.astype(np.int64) + (128 if dtype == "int8" else 0)
    xp = np.pad(xu, ((0, 0), (0, 0), (pad[0], pad[2]), (pad[1], pad[3])), constant_values=zu)
    oh, ow = out_shape[1:3]
    ref = sum(np.einsum("nchw,oc->nohw", xp[:, :, i:i + stride[0] * oh:stride[0], j:j + stride[1] * ow:stride[1]],
                        w[:, :, i, j].astype(np.int64)) for i in range(k[0]) for j in range(k[1]))
    assert np.array_equal(got, ref.transpose(0, 2, 3, 1))


@pytest.mark.parametrize("kernel", ["avx2", VNNI])
@pytest.mark.parametrize("shape, k, stride, pad, zero", [
    ((1, 5, 7, 7), (3, 3), (1, 1), (1, 1, 1, 1), 127),
    ((1, 24, 6, 6), (3, 3), (2, 2), (0, 0, 1, 1), -3),     # 24 channels: a padded second vector
    ((1, 3, 9, 5), (5, 5), (1, 2), (2, 2, 2, 2), 0),
    ((1, 32, 12, 12), (3, 3), (2, 2), (1, 1, 1, 1), -128),  # whole vectors, stride 2 on a wide map
], ids=["3x3-s1", "3x3-s2-asym", "5x5-s12", "3x3-s2-wide"])
@pytest.mark.parametrize("dtype", ["int8", "uint8"])
def test_depthwise_default_schedule_is_exact(kernel, shape, k, stride, pad, zero, dtype):
    """``depthwise_func`` channels-last against a numpy NCHW depthwise conv of ``x - z``, with
    padding taps zero (the kernel reads z there and its bias removes ``z * sum(w)``)."""
    n, ch, h, wd = shape
    zero += 128 if dtype == "uint8" else 0
    func, out_shape = depthwise.depthwise_func((n, h, wd, ch), dtype, k, stride, pad, zero)
    x, w = _extreme(shape, dtype), _extreme((ch, 1, *k), "int8")
    got = _call(_build(func, kernel, tensorized=False), x.transpose(0, 2, 3, 1).copy(), depthwise.weight(w),
                depthwise.bias(w, dtype, zero), out_shape=out_shape)
    xp = np.pad(x.astype(np.int64) - zero, ((0, 0), (0, 0), (pad[0], pad[2]), (pad[1], pad[3])))
    oh, ow = out_shape[1:3]
    ref = sum(xp[:, :, i:i + stride[0] * oh:stride[0], j:j + stride[1] * ow:stride[1]] * w[None, :, 0, i, j, None, None]
              for i in range(k[0]) for j in range(k[1]))
    assert np.array_equal(got, ref.transpose(0, 2, 3, 1))


def test_depthwise_lanes_follow_the_vector_registers():
    """16 channels per depthwise vector only where 32 zmm registers hold the 3x3 filter's nine
    weight vectors (AVX-512 VNNI); 8 where there are 16 ymm (docs/int8_kernels.md "Depthwise")."""
    kernels = packed_dot.KERNELS
    assert [default_schedule.depthwise_lanes(kernels[k]) for k in ("avx2", "avxvnni", "vnni")] == [8, 8, 16]
    assert default_schedule.depthwise_lanes(None) == 8
    func, _ = depthwise.depthwise_func((1, 6, 6, 32), "uint8", (3, 3), (1, 1), (1, 1, 1, 1), 3)
    packed_dot.register()
    for name, lanes in (("avx2", 8), ("vnni", 16)):
        mod = tvm.IRModule({"main": func.with_attr("global_symbol", "main")})
        with tvm.target.Target({"kind": "llvm", "mcpu": MCPU[name], "num-cores": 2}):
            mod = dl.ApplyDefaultSchedule(*default_schedule.rules(kernels[name]))(mod)
        assert f"for ch_1 in T.vectorized(T.int64({lanes})):" in mod["main"].script()  # the output's channel vector


def test_avx_vnni_register_block_fits_16_ymm():
    """x86-avx-vnni has no AVX-512, so 16 ymm registers: at most 12 accumulators (4 pixels x 3
    groups of 8 channels), which leaves one per weight vector and one for the broadcast word."""
    k = packed_dot.KERNELS["avxvnni"]
    assert default_schedule.register_block(28, 12, k) == (4, 3)
    for width in range(1, 60):
        for groups in range(1, 13):
            rb, ob = default_schedule.register_block(width, groups, k)
            assert rb * ob <= k.accumulators == 12 and 1 + ob + rb * ob <= 16
