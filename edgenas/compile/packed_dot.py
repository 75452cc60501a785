"""x86 integer dot-product kernels: conv2d (channels-last) and matmul as a packed-weight GEMM, tensorized.

Why: TVM 0.27 gives an int8 conv no integer dot-product instruction on x86. Its only x86
intrinsics (``dot_16x4_vnni``/``dot_16x4_avx512``) are broken against its own LLVM 22: LLVM 21
changed ``llvm.x86.avx512.vpdpbusd.512`` to take ``<64 x i8>`` operands, and every candidate
that uses them fails LLVM's verifier. There are none for AVX2. So an untensorized tuned int8 conv
runs widening multiplies (``vpmovzxbd`` + ``vpmulld``) and is about 2x *slower* than fp32.
Measured here on one pointwise conv (96 -> 24 channels, 24x24 pixels, 1 thread, 32 trials):
fp32 30.1 µs, plain int8 58.1 µs, this kernel with ``pmaddwd`` (AVX2) 26.9 µs, and with
``vpdpbusd`` (AVX-512 VNNI) 6.1 µs. All are bit-exact.

How: a conv is a GEMM over pixels, with its taps in the reduction. Its weight is a constant, so
it is packed once, at compile time, into ``(O/L, KH, KW, C/K, L, K)`` (a matmul's into
``(O/L, C/K, L, K)``): L output channels of K consecutive input channels, contiguous. Convs run
channels-last (:func:`conv_dot_func`; the whole integer graph is NHWC, ``layout.py``), so each
tap of a pixel reads K contiguous input channels and the result is written as it comes out of
the register block, requantized there (``default_schedule``). Each tensor intrinsic does
``C[0:L] += A[0:K] . B[0:L, 0:K]``:

* ``avx2`` (``pmaddwd``, L=8, K=2): the weights are stored as int16, so the intrinsic is exact
  for any int8 weight.
* its narrow form (``pmaddubsw`` + ``pmaddwd`` by ones, L=8, K=4, int8 weights): twice as dense,
  onnxruntime's AVX2 kernel. ``pmaddubsw`` adds two u8 x s8 products into a *saturating* int16,
  so it is used only for a weight whose every pair of adjacent input channels has
  ``|w0| + |w1| <= 128`` (then ``255 * 128 = 32640`` fits): checked on the actual weight of
  each op (:func:`fitting`). 7-bit weights always fit, which is why the ``x86-avx2`` target asks
  the QAT for 7 bits (``[int8] weight_bits``); a bring-your-own 8-bit model keeps ``pmaddwd``
  (docs/int8_kernels.md, "Narrow weights on AVX2").
* ``vnni`` (``vpdpbusd``, L=16, K=4): u8 x i8 into int32, exact.
* ``avxvnni`` (``vpdpbusd`` on ymm, L=8, K=4): the same instruction at 256 bits, for the client
  CPUs with AVX-VNNI and no AVX-512 (``x86-avx-vnni``, mcpu alderlake). TVM has no such
  intrinsic (its rule maps AVX-VNNI to the 512-bit one, which those CPUs cannot run). LLVM's
  ``llvm.x86.avx512.vpdpbusd.256`` becomes the VEX-encoded ``{vex} vpdpbusd`` with ``+avxvnni``
  and the EVEX ymm form on AVX-512 VNNI + VL, which is how it is checked on a host without AVX-VNNI.

All intrinsics need unsigned activations. An int8 activation with zero point z is the same
number as ``uint8(x + 128)`` with zero point z + 128. The rewrite's ``z * sum(w)`` correction
already removes that.

MetaSchedule picks the intrinsics up through ``MultiLevelTilingWithIntrin`` in the space of
the targets that have them (:func:`space_generator`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DotKernel:
    intrin: str         # tensor intrinsic name (registered by :func:`register`)
    lanes: int          # int32 outputs per instruction (L)
    depth: int          # reduction elements summed into each lane (K)
    weight_dtype: str   # how the packed weight is stored
    accumulators: int   # vector registers the GEMM's register block may hold (``default_schedule``)
    pair_bound: int | None = None      # |w0| + |w1| limit of adjacent weights (saturating pair sums)
    narrow: DotKernel | None = None    # the denser form used for a weight that fits its pair bound

    def members(self) -> tuple[DotKernel, ...]:
        """This kernel and its narrow form: every intrinsic a target with it may use."""
        return (self,) if self.narrow is None else (self, *self.narrow.members())

    def member(self, weight_dtype: str) -> DotKernel:
        """The member whose packed weight is stored as ``weight_dtype`` (how a schedule tells,
        from a kernel's buffers, which form the rewrite chose for it)."""
        return next(k for k in self.members() if k.weight_dtype == weight_dtype)


# A target's [int8] dot_product -> its kernel: lanes are output channels.
KERNELS = {
    # 16 ymm: 12 accumulators + 3 weights + the broadcast word (pmaddwd); the narrow form also
    # needs the vector of ones and a product temporary, so 8 (MLAS's AVX2 block: 4 pixels x 16).
    "avx2": DotKernel("edgenas_dot_8x2_avx2", 8, 2, "int16", 12,
                      narrow=DotKernel("edgenas_dot_8x4_avx2_u8s8", 8, 4, "int8", 8, pair_bound=128)),
    "vnni": DotKernel("edgenas_dot_16x4_vnni", 16, 4, "int8", 24),
    # AVX-VNNI (client CPUs without AVX-512): vpdpbusd on ymm, VEX-encoded. 16 ymm: 12 accumulators
    # (4 pixels x 3 groups) + 3 weights + the broadcast word; MLAS's AVX-VNNI block, 6 pixels x 16
    # channels, also holds 12
    "avxvnni": DotKernel("edgenas_dot_8x4_avxvnni", 8, 4, "int8", 12),
}


def kernel_for(spec) -> DotKernel | None:
    """The packed kernel of a target (a ``TargetSpec``), or None where it has none (ARM, CUDA):
    whether a target uses them is its row of ``pipeline.BACKENDS``, which kernel its ``[int8]``."""
    from .pipeline import backend

    return KERNELS.get(spec.int8_dot) if backend(spec).packed_int8 else None


def fits(w: np.ndarray, k: DotKernel) -> bool:
    """Whether ``k``'s saturating pair sums are exact for ``w`` (int, input channels on axis 1):
    every pair of adjacent input channels ``(2j, 2j + 1)`` has ``|w0| + |w1| <= k.pair_bound``
    (u8 activations are at most 255; ``255 * 128 = 32640 <= 32767``). Pairs never straddle a
    K-group, because K is even and the channels are zero-padded to a multiple of it."""
    if k.pair_bound is None:
        return True
    a = np.abs(w.astype(np.int32))
    if a.shape[1] % 2:
        a = np.concatenate([a, np.zeros_like(a[:, :1])], axis=1)
    return bool((a[:, 0::2] + a[:, 1::2]).max(initial=0) <= k.pair_bound)


def fitting(k: DotKernel, w: np.ndarray) -> DotKernel:
    """The densest member of ``k`` that is exact for the weight ``w`` (see :func:`fits`)."""
    return next((m for m in reversed(k.members()) if fits(w, m)), k)




@functools.cache
def register() -> None:
    """Register the tensor intrinsics (once per process: tuning and applying records need them).

    They accumulate into a "global"-scope buffer: what MetaSchedule's ``MultiLevelTilingWithIntrin``
    writes, and ``default_schedule``'s register block, which TVM keeps on the stack when it is
    smaller than ``default_schedule.STACK_BYTES`` (a "local" one is a heap workspace per tile).
    The input word is broadcast inline: a named temporary in the intrinsic is a one-element
    buffer, and TVM allocated it from the heap on every tile too (docs/int8_kernels.md)."""
    from tvm.s_tir import TensorIntrin
    from tvm.script import tirx as T

    def desc(L, K, wdt):
        @T.prim_func(s_tir=True)
        def f(A: T.Buffer((K,), "uint8", offset_factor=1), B: T.Buffer((L, K), wdt, offset_factor=1),
              C: T.Buffer((L,), "int32", offset_factor=1, scope="global")) -> None:
            with T.sblock("root"):
                T.reads(C[0:L], A[0:K], B[0:L, 0:K])
                T.writes(C[0:L])
                for i in T.serial(0, L):
                    for k in T.serial(0, K):
                        with T.sblock("update"):
                            vi, vk = T.axis.remap("SR", [i, k])
                            C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")
        return f

    @T.prim_func(s_tir=True)
    def pmaddwd(A: T.Buffer((2,), "uint8", offset_factor=1), B: T.Buffer((8, 2), "int16", offset_factor=1),
                C: T.Buffer((8,), "int32", offset_factor=1, scope="global")) -> None:
        with T.sblock("root"):
            T.reads(C[0:8], A[0:2], B[0:8, 0:2])
            T.writes(C[0:8])
            C[T.ramp(T.int32(0), 1, 8)] = C.vload([0], "int32x8") + T.call_llvm_pure_intrin(
                "int32x8", T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"),
                T.reinterpret(T.broadcast(T.reinterpret(T.cast(A.vload([0], "uint8x2"), "int16x2"), dtype="int32"), 8),
                              dtype="int16x16"), B.vload([0, 0], dtype="int16x16"))

    def vpdpbusd(L):
        """``vpdpbusd`` on L int32 lanes: ``llvm.x86.avx512.vpdpbusd.512`` (zmm, L=16) or ``.256``
        (ymm, L=8). Since LLVM 21 both take their byte operands as ``<4L x i8>`` vectors."""
        @T.prim_func(s_tir=True)
        def f(A: T.Buffer((4,), "uint8", offset_factor=1), B: T.Buffer((L, 4), "int8", offset_factor=1),
              C: T.Buffer((L,), "int32", offset_factor=1, scope="global")) -> None:
            with T.sblock("root"):
                T.reads(C[0:L], A[0:4], B[0:L, 0:4])
                T.writes(C[0:L])
                C[T.ramp(T.int32(0), 1, L)] = T.call_llvm_pure_intrin(
                    f"int32x{L}", T.llvm_lookup_intrinsic_id(f"llvm.x86.avx512.vpdpbusd.{32 * L}"),
                    C.vload([0], f"int32x{L}"),
                    T.reinterpret(T.broadcast(T.reinterpret(A.vload([0], "uint8x4"), dtype="int32"), L),
                                  dtype=f"uint8x{4 * L}"),
                    B.vload([0, 0], dtype=f"int8x{4 * L}"))
        return f

    @T.prim_func(s_tir=True)
    def pmaddubsw(A: T.Buffer((4,), "uint8", offset_factor=1), B: T.Buffer((8, 4), "int8", offset_factor=1),
                  C: T.Buffer((8,), "int32", offset_factor=1, scope="global")) -> None:
        with T.sblock("root"):
            T.reads(C[0:8], A[0:4], B[0:8, 0:4])
            T.writes(C[0:8])
            C[T.ramp(T.int32(0), 1, 8)] = C.vload([0], "int32x8") + T.call_llvm_pure_intrin(
                "int32x8", T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"),
                T.call_llvm_pure_intrin(
                    "int16x16", T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.ub.sw"),
                    T.reinterpret(T.broadcast(T.reinterpret(A.vload([0], "uint8x4"), dtype="int32"), 8), dtype="uint8x32"),
                    B.vload([0, 0], dtype="int8x32")),
                T.broadcast(T.int16(1), 16))

    avx2 = KERNELS["avx2"]
    for k, impl in ((avx2, pmaddwd), (avx2.narrow, pmaddubsw), (KERNELS["vnni"], vpdpbusd(16)),
                    (KERNELS["avxvnni"], vpdpbusd(8))):
        TensorIntrin.register(k.intrin, desc(k.lanes, k.depth, k.weight_dtype), impl, override=True)


def padded(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def pack_weight(w: np.ndarray, k: DotKernel) -> np.ndarray:
    """(O, C) int8 -> (O'/L, C'/K, L, K) in ``k.weight_dtype``, zero-padded to multiples of L, K."""
    o, c = w.shape
    full = np.zeros((padded(o, k.lanes), padded(c, k.depth)), dtype=k.weight_dtype)
    full[:o, :c] = w
    op, cp = full.shape
    return np.ascontiguousarray(full.reshape(op // k.lanes, k.lanes, cp // k.depth, k.depth).transpose(0, 2, 1, 3))


def int64_dims(*dims):
    """Shapes as int64 constants: Relax's legalized ops use int64 shapes, and FuseTIR needs the
    kernels it fuses with them to have identical buffer types."""
    from tvm import tirx

    return tuple(tirx.const(int(d), "int64") for d in dims)


def packed_dot_func(in_shape: tuple[int, int], in_dtype: str, out: int, k: DotKernel):
    """A matmul with a constant weight as one TIR function: ``x`` (M, C) and the packed weight
    in, the int32 accumulator (M, out) out.

    Three blocks: ``pack_x`` writes the activations as uint8 (int8 + 128, channels zero-padded
    to K), ``packed_dot`` is the GEMM ``Y[r, oo, oi] = sum_{co, ci} X[r, co*K + ci] *
    W[oo, co, oi, ci]`` with the split axes explicit, so that the innermost (oi, ci) pair is
    exactly the intrinsic's (i, k), and ``unpack_y`` drops the padded output channels. Keeping
    them inside the function is what lets FuseOps fuse the requantize epilogue into it (it
    fuses elementwise ops after an out-fusable op, not reshapes).
    """
    from tvm import te, tirx

    i64 = int64_dims
    L, K = k.lanes, k.depth
    rows, c = in_shape
    cp, op = padded(c, K), padded(out, L)
    x = te.placeholder(i64(*in_shape), in_dtype, name="x")

    def load(r, cc):
        v = x[r, cc]
        v = (v.astype("int16") + 128).astype("uint8") if in_dtype == "int8" else v
        return v if cp == c else tirx.if_then_else(cc < c, v, tirx.const(0, "uint8"))

    xp = te.compute(i64(rows, cp), load, name="pack_x")
    wp = te.placeholder(i64(op // L, cp // K, L, K), k.weight_dtype, name="w")
    co = te.reduce_axis((tirx.const(0, "int64"), tirx.const(cp // K, "int64")), "co")
    ci = te.reduce_axis((tirx.const(0, "int64"), tirx.const(K, "int64")), "ci")
    y = te.compute(i64(rows, op // L, L), lambda r, oo, oi: te.sum(
        xp[r, co * K + ci].astype("int32") * wp[oo, co, oi, ci].astype("int32"), axis=[co, ci]), name="packed_dot")
    res = te.compute(i64(rows, out), lambda r, o: y[r, o // L, o % L], name="unpack_y")
    # op_pattern 4 (kOutEWiseFusable): FuseOps fuses the elementwise requantize after it.
    return te.create_prim_func([x, wp, res]).without_attr("global_symbol").with_attr("op_pattern", 4)


def conv_dot_func(in_shape: tuple[int, int, int, int], in_dtype: str, out: int, k: DotKernel,
                  kernel: tuple[int, int], strides: tuple[int, int], padding: tuple[int, int, int, int],
                  zero: int):
    """A conv (groups 1: 1x1, the stem, ResNet's 3x3) channels-last as the packed GEMM with the
    taps as extra reduction axes: ``x`` NHWC and the weight packed by :func:`pack_conv_weight`
    in, the int32 accumulator NHWC out (zero point not removed: the caller subtracts
    ``z' * sum(w)``, ``z'`` being :func:`gemm_zero`).

    ``Y[b, i, j, oo, oi] = sum_{kh, kw, co, ci} X[b, i*sh + kh, j*sw + kw, co*K + ci] *
    W[oo, kh, kw, co, oi, ci]``, the tensor intrinsic's (i, k) pair innermost: each step
    broadcasts K channels of one input pixel against L output channels, onnxruntime's symmetric
    conv design (docs/int8_kernels.md). The integer graph is channels-last throughout
    (``layout.py``), so the GEMM reads its input rows as they are; a ``pack_x`` block is added
    only when something must change: padding (filled with the activation's zero point, so every
    tap reads real 0.0 and the correction is the same for border pixels: the padded copy plays
    the role of MLAS's indirection buffer), channels short of a multiple of K, or int8
    activations (``x + 128``, the intrinsics take uint8). ``padding`` is (top, left, bottom, right).
    """
    from tvm import te, tirx

    i64 = int64_dims
    L, K = k.lanes, k.depth
    n, h, w, c = in_shape
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = kernel, strides, padding
    oh, ow = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
    cp, op = padded(c, K), padded(out, L)
    zu = gemm_zero(in_dtype, zero)
    x = te.placeholder(i64(*in_shape), in_dtype, name="x")
    padding_needed = any((pt, pl, pb, pr)) or cp != c

    def load(b, i, j, cc):
        v = x[b, i - pt, j - pl, tirx.min(cc, c - 1) if cp != c else cc]
        v = (v.astype("int16") + 128).astype("uint8") if in_dtype == "int8" else v
        if not padding_needed:
            return v
        inside = tirx.all(i >= pt, i < h + pt, j >= pl, j < w + pl, cc < c)
        pad = tirx.if_then_else(cc < c, tirx.const(zu, "uint8"), tirx.const(0, "uint8"))
        return tirx.if_then_else(inside, v, pad)

    xp = (te.compute(i64(n, h + pt + pb, w + pl + pr, cp), load, name="pack_x")
          if padding_needed or in_dtype == "int8" else x)
    wp = te.placeholder(i64(op // L, kh, kw, cp // K, L, K), k.weight_dtype, name="w")
    rh = te.reduce_axis((tirx.const(0, "int64"), tirx.const(kh, "int64")), "rh")
    rw = te.reduce_axis((tirx.const(0, "int64"), tirx.const(kw, "int64")), "rw")
    co = te.reduce_axis((tirx.const(0, "int64"), tirx.const(cp // K, "int64")), "co")
    ci = te.reduce_axis((tirx.const(0, "int64"), tirx.const(K, "int64")), "ci")
    y = te.compute(i64(n, oh, ow, op // L, L), lambda b, i, j, oo, oi: te.sum(
        xp[b, i * sh + rh, j * sw + rw, co * K + ci].astype("int32") * wp[oo, rh, rw, co, oi, ci].astype("int32"),
        axis=[rh, rw, co, ci]), name="packed_dot")
    res = te.compute(i64(n, oh, ow, out), lambda b, i, j, o: y[b, i, j, o // L, o % L], name="unpack_y")
    # op_pattern 4 (kOutEWiseFusable): FuseOps fuses the elementwise requantize after it.
    return te.create_prim_func([x, wp, res]).without_attr("global_symbol").with_attr("op_pattern", 4), (n, oh, ow, out)


def gemm_zero(in_dtype: str, zero: int) -> int:
    """The activation zero point as the GEMM sees it: int8 enters as uint8 ``x + 128``."""
    return zero + 128 if in_dtype == "int8" else zero


def pack_conv_weight(w: np.ndarray, k: DotKernel) -> np.ndarray:
    """(O, C, KH, KW) int8 -> (O'/L, KH, KW, C'/K, L, K) in ``k.weight_dtype``, zero-padded."""
    o, c, kh, kw = w.shape
    full = np.zeros((padded(o, k.lanes), padded(c, k.depth), kh, kw), dtype=k.weight_dtype)
    full[:o, :c] = w
    op, cp = full.shape[:2]
    return np.ascontiguousarray(full.reshape(op // k.lanes, k.lanes, cp // k.depth, k.depth, kh, kw)
                                .transpose(0, 4, 5, 2, 1, 3))


def space_generator(k: DotKernel | None):
    """MetaSchedule's CPU space with the kernel's tensorizing rule before plain multi-level tiling.

    The rules are listed explicitly rather than taken "from-target": for a VNNI ``mcpu`` that
    would add TVM's own (broken, see the module docstring) ``dot_16x4_vnni`` rule.
    """
    from tvm.s_tir import meta_schedule as ms

    if k is None:
        return "post-order-apply"
    register()
    rules = list(ms.schedule_rule.ScheduleRule.create("llvm"))
    at = next(i for i, r in enumerate(rules) if type(r).__name__ == "MultiLevelTiling")
    # one rule per member: each applies only to the GEMMs whose weight dtype its intrinsic takes
    rules[at:at] = [ms.schedule_rule.MultiLevelTilingWithIntrin(
        m.intrin, structure="SSRSRS", tile_binds=None, max_innermost_factor=64, vector_load_lens=None,
        reuse_read=None, reuse_write=ms.schedule_rule.ReuseType(req="may", levels=[1, 2], scope="global"))
        for m in k.members()]
    posts = list(ms.postproc.Postproc.create("llvm"))
    posts.insert(len(posts) - 1, ms.postproc.RewriteTensorize(vectorize_init_loop=True))  # before RewriteLayout
    return ms.space_generator.PostOrderApply(sch_rules=rules, postprocs=posts, mutator_probs="llvm")
