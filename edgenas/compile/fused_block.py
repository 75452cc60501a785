"""One kernel for a MobileNetV2 inverted-residual block (VNNI): expand, depthwise, project, residual.

Why: ``qdq_rewrite`` builds such a block as three kernels (1x1 expand to E channels, depthwise
3x3, 1x1 project with the residual fused into it), so the E-wide expanded tensor makes two round
trips through memory. :func:`fused_func` is the block as one hand-scheduled TIR function that
works in bands of output rows and keeps the last three expanded rows in a small ring buffer; it
took 0.87x / 0.82x the unfused kernels' time at 1 / 2 threads over five MobileNetV2 blocks,
bit-exact (docs/int8_kernels.md, "Fused inverted-residual block").

:func:`fuse_blocks` finds the blocks in the module ``qdq_rewrite.fold_qdq`` wrote and replaces each
chain by one ``call_tir`` of the fused kernel, with the very constants (packed weights,
zero-point corrections, requantize scales and biases, clip bounds, residual scales) the unfused
kernels use, so both builds compute the same integers. Anything that is not exactly the pattern
(see :func:`fuse_blocks`) stays as it is.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
from tvm import relax, tirx
from tvm.ir import Op
from tvm.ir.expr import GenericConst
from tvm.relax.expr_functor import PyExprMutator, mutator

from . import default_schedule, depthwise, packed_dot
from .qdq_absorb import collect_users

__all__ = ["Args", "Block", "Residual", "default_bands", "fuse_blocks", "fused_func", "pack_args"]

NAME = "fused_inverted_residual"   # the PrimFunc's name in the module (and in tests)
_LOG = logging.getLogger(__name__)
_VNNI = packed_dot.KERNELS["vnni"]


@dataclasses.dataclass(frozen=True)
class Residual:
    """The projection's output quantize and the residual ``quantize(dequantize(p) + dequantize(x))``
    with per-tensor scales and zero points, computed in float32 as the unfused kernel does."""

    lo_p: int          # the projection's requantize clip bounds (uint8)
    hi_p: int
    zp: int            # dequantize(p): zero point, scale
    sp: float
    zx: int            # dequantize(x)
    sx: float
    zy: int            # quantize(...) -> y
    sy: float
    x_first: bool      # the add's operand order, dequantize(x) first: kept, as LLVM may contract either multiply


@dataclasses.dataclass(frozen=True)
class Block:
    """What :func:`fused_func` bakes in: the shape (NHWC, batch 1), the depthwise's padding value
    (the expanded activation's zero point) and the requantize clip bounds."""

    h: int
    w: int
    c: int            # block input / output channels: a multiple of 8
    e: int            # expanded channels: a multiple of 16
    ze: int           # the depthwise pads with it
    lo_e: int
    hi_e: int
    lo_d: int
    hi_d: int
    residual: Residual


@dataclasses.dataclass(frozen=True)
class Args:
    """The constant arguments of :func:`fused_func`, in its parameter order after ``x``."""

    w1: np.ndarray      # (E/16, C/4, 64) int8: pack_conv_weight of the expand's (E, C, 1, 1)
    corr1: np.ndarray   # (E,) int32: z_x * sum(w1)
    s1: np.ndarray      # (E,) float32 requantize scale and bias
    b1: np.ndarray
    wd: np.ndarray      # (3, 3, E) int16: depthwise.weight
    bd: np.ndarray      # (E,) int32: depthwise.bias
    s2: np.ndarray
    b2: np.ndarray
    w2: np.ndarray      # (C'/16, E/4, 64) int8, C' = C padded to 16
    corr3: np.ndarray   # (C,) int32: z_d * sum(w2)
    s3: np.ndarray
    b3: np.ndarray

    def arrays(self) -> list[np.ndarray]:
        return [getattr(self, f.name) for f in dataclasses.fields(self)]


def default_bands(h: int) -> int:
    """Row bands the threads share: 2. The kernel was measured at 1 and 2 threads (this project's
    hosts); two bands give each of 2 threads one band, and on 1 thread cost only the two rows
    at the band edge expanded twice (2 / H of the expand). More bands than threads only add
    such rows (docs/int8_kernels.md)."""
    return min(2, h)


def pack_args(w1, wd, w2, zx: int, ze: int, zd: int, s1, b1, s2, b2, s3, b3) -> Args:
    """:class:`Args` from the unpacked int8 weights ((E, C), (E, 1, 3, 3), (C, E)), uint8 zero
    points and per-channel float32 requantize parameters, packed as the unfused kernels pack them."""
    e, c = w1.shape
    p2 = packed_dot.pack_conv_weight(w2[:, :, None, None], _VNNI)
    return Args(packed_dot.pack_conv_weight(w1[:, :, None, None], _VNNI).reshape(e // 16, c // 4, 64),
                (w1.astype(np.int64).sum(1) * zx).astype("int32"), s1, b1, depthwise.weight(wd),
                depthwise.bias(wd, "uint8", ze), s2, b2, p2.reshape(p2.shape[0], e // 4, 64),
                (w2.astype(np.int64).sum(1) * zd).astype("int32"), s3, b3)


# ---------------------------------------------------------------- the kernel
def _vnni(acc, word, wvec):
    """``acc[0:16] += word[0:4] . w[0:16, 0:4]``: the body of ``packed_dot``'s
    ``edgenas_dot_16x4_vnni`` intrinsic (``vpdpbusd``; the broadcast input word inline)."""
    return tirx.call_llvm_pure_intrin(
        "int32x16", "llvm.x86.avx512.vpdpbusd.512", acc,
        tirx.reinterpret("uint8x64", tirx.Broadcast(tirx.reinterpret("int32", word), 16)), wvec)


def _f(v, n):
    return tirx.Broadcast(tirx.const(float(v), "float32"), n)


def _requant(acc, s, b, lo, hi, n):
    """``qdq_rewrite``'s requantize of an int32 vector: ``uint8(clip(round(float(acc) * s + b)))``."""
    return tirx.Cast(f"uint8x{n}", tirx.max(tirx.min(tirx.nearbyint(tirx.Cast(f"float32x{n}", acc) * s + b),
                                                     _f(hi, n)), _f(lo, n)))


def _residual(r: Residual, acc, s, b, xv, n):
    """The projection's requantize, then the residual as TVM legalizes the unfused graph's
    ``quantize(add(dequantize(p), dequantize(x)))``: ``float(int32(v) - z) * s`` each,
    ``round(sum / s_y) + z_y`` clipped to uint8 (the same expression, so the same roundings)."""
    i32 = f"int32x{n}"

    def dq(v, z, s_):
        return tirx.Cast(f"float32x{n}", tirx.Cast(i32, v) - tirx.Broadcast(tirx.const(int(z), "int32"), n)) * _f(s_, n)

    p, x = dq(_requant(acc, s, b, r.lo_p, r.hi_p, n), r.zp, r.sp), dq(xv, r.zx, r.sx)
    total = x + p if r.x_first else p + x
    return tirx.Cast(f"uint8x{n}", tirx.max(tirx.min(tirx.nearbyint(total / _f(r.sy, n)) + _f(r.zy, n), _f(255, n)),
                                            _f(0, n)))


def fused_func(blk: Block, bands: int, dw_lanes: int = 8):
    """The block as one TIR function ``(x, *Args.arrays()) -> y``, uint8 NHWC in and out.

    ``bands``: row bands the threads share (``T.parallel``; see :func:`default_bands`). Each band
    walks its rows keeping the last three expanded rows (uint8, requantized, zero-point columns
    at both ends) in a ring: expand one row, depthwise the row above it into a one-row buffer,
    then project + residual that row straight into the output. Both GEMMs run ``vpdpbusd`` in
    the register block ``default_schedule.register_block`` gives the unfused kernels, with the
    same reduction order; the depthwise is ``depthwise``'s form (uint8 x int16 -> ``vpmaddwd``)
    at ``dw_lanes`` channels per vector; the requantizes are the unfused expressions."""
    from tvm.script import tirx as T

    H, W, C, E = blk.h, blk.w, blk.c, blk.e
    assert C % 8 == 0 and E % 16 == 0 and E % dw_lanes == 0, "C a multiple of 8, E of 16"
    CP = packed_dot.padded(C, 16)
    G1, G3 = E // 16, CP // 16
    RB1, OB1 = default_schedule.register_block(W, G1, _VNNI)    # expand: as the unfused kernel's
    RB3, OB3 = default_schedule.register_block(W, G3, _VNNI)    # project
    BH = -(-H // bands)
    ROW = (W + 2) * E                                           # one ring row (uint8)
    ZE, LOE, HIE, LOD, HID, R, DL = blk.ze, blk.lo_e, blk.hi_e, blk.lo_d, blk.hi_d, blk.residual, dw_lanes

    @T.prim_func
    def fused(x: T.Buffer((1, H, W, C), "uint8"), w1: T.Buffer((G1, C // 4, 64), "int8"),
              corr1: T.Buffer((E,), "int32"), s1: T.Buffer((E,), "float32"), b1: T.Buffer((E,), "float32"),
              wd: T.Buffer((3, 3, E), "int16"), bd: T.Buffer((E,), "int32"),
              s2: T.Buffer((E,), "float32"), b2: T.Buffer((E,), "float32"),
              w2: T.Buffer((G3, E // 4, 64), "int8"), corr3: T.Buffer((C,), "int32"),
              s3: T.Buffer((C,), "float32"), b3: T.Buffer((C,), "float32"),
              y: T.Buffer((1, H, W, C), "uint8")):
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True})
        for band in T.parallel(bands):
            ring = T.alloc_buffer((3 * ROW,), "uint8")
            drow = T.alloc_buffer((W * E,), "uint8")
            acc1 = T.alloc_buffer((RB1 * OB1 * 16,), "int32")
            acc3 = T.alloc_buffer((RB3 * OB3 * 16,), "int32")
            dacc = T.alloc_buffer((DL,), "int32")
            # the zero point in the ring's left and right padding columns (never overwritten)
            for s in T.serial(3):
                for cv in T.serial(E // 16):
                    ring[T.Ramp(s * ROW + cv * 16, 1, 16)] = T.Broadcast(T.uint8(ZE), 16)
                    ring[T.Ramp(s * ROW + (W + 1) * E + cv * 16, 1, 16)] = T.Broadcast(T.uint8(ZE), 16)
            for q in T.serial(BH + 2):
                r = band * BH - 1 + q                       # the expanded row this step computes
                if r <= T.min(H, band * BH + BH):
                    slot = (r + 3) % 3
                    if r < 0 or r >= H:                     # above / below the image: the zero point
                        for jc in T.serial(W * E // 16):
                            ring[T.Ramp(slot * ROW + E + jc * 16, 1, 16)] = T.Broadcast(T.uint8(ZE), 16)
                    else:
                        # expand: row r of x -> ring[slot], requantized in the register block
                        for jb in T.serial(W // RB1):
                            for gb in T.serial(G1 // OB1):
                                for p in T.unroll(RB1):
                                    for g in T.unroll(OB1):
                                        acc1[T.Ramp((p * OB1 + g) * 16, 1, 16)] = T.Broadcast(T.int32(0), 16)
                                for co in T.serial(C // 4):
                                    for p in T.unroll(RB1):
                                        for g in T.unroll(OB1):
                                            acc1[T.Ramp((p * OB1 + g) * 16, 1, 16)] = _vnni(
                                                acc1[T.Ramp((p * OB1 + g) * 16, 1, 16)],
                                                x[0, r, jb * RB1 + p, T.Ramp(co * 4, 1, 4)],
                                                w1[gb * OB1 + g, co, T.Ramp(0, 1, 64)])
                                for p in T.unroll(RB1):
                                    for g in T.unroll(OB1):
                                        ring[T.Ramp(slot * ROW + (jb * RB1 + p + 1) * E + (gb * OB1 + g) * 16, 1, 16)] = _requant(
                                            acc1[T.Ramp((p * OB1 + g) * 16, 1, 16)] - corr1[T.Ramp((gb * OB1 + g) * 16, 1, 16)],
                                            s1[T.Ramp((gb * OB1 + g) * 16, 1, 16)], b1[T.Ramp((gb * OB1 + g) * 16, 1, 16)],
                                            LOE, HIE, 16)
                    if q >= 2:
                        o = r - 1                           # output row: its three expanded rows are in the ring
                        # depthwise 3x3 of row o -> drow, requantized
                        for cv in T.serial(E // DL):
                            for j in T.serial(W):
                                dacc[T.Ramp(0, 1, DL)] = bd[T.Ramp(cv * DL, 1, DL)]
                                for kh in T.unroll(3):
                                    for kw in T.unroll(3):
                                        dacc[T.Ramp(0, 1, DL)] = dacc[T.Ramp(0, 1, DL)] + T.Cast(
                                            f"int32x{DL}", ring[T.Ramp((o + 2 + kh) % 3 * ROW + (j + kw) * E + cv * DL, 1, DL)]
                                        ) * T.Cast(f"int32x{DL}", wd[kh, kw, T.Ramp(cv * DL, 1, DL)])
                                drow[T.Ramp(j * E + cv * DL, 1, DL)] = _requant(
                                    dacc[T.Ramp(0, 1, DL)], s2[T.Ramp(cv * DL, 1, DL)], b2[T.Ramp(cv * DL, 1, DL)],
                                    LOD, HID, DL)
                        # project drow -> + residual -> y[o]
                        for jb in T.serial(W // RB3):
                            for gb in T.serial(G3 // OB3):
                                for p in T.unroll(RB3):
                                    for g in T.unroll(OB3):
                                        acc3[T.Ramp((p * OB3 + g) * 16, 1, 16)] = T.Broadcast(T.int32(0), 16)
                                for co in T.serial(E // 4):
                                    for p in T.unroll(RB3):
                                        for g in T.unroll(OB3):
                                            acc3[T.Ramp((p * OB3 + g) * 16, 1, 16)] = _vnni(
                                                acc3[T.Ramp((p * OB3 + g) * 16, 1, 16)],
                                                drow[T.Ramp((jb * RB3 + p) * E + co * 4, 1, 4)],
                                                w2[gb * OB3 + g, co, T.Ramp(0, 1, 64)])
                                for p in T.unroll(RB3):
                                    for g in T.unroll(OB3):
                                        if (gb * OB3 + g) * 16 + 16 <= C:
                                            y[0, o, jb * RB3 + p, T.Ramp((gb * OB3 + g) * 16, 1, 16)] = _residual(
                                                R, acc3[T.Ramp((p * OB3 + g) * 16, 1, 16)]
                                                - corr3[T.Ramp((gb * OB3 + g) * 16, 1, 16)],
                                                s3[T.Ramp((gb * OB3 + g) * 16, 1, 16)], b3[T.Ramp((gb * OB3 + g) * 16, 1, 16)],
                                                x[0, o, jb * RB3 + p, T.Ramp((gb * OB3 + g) * 16, 1, 16)], 16)
                                        elif (gb * OB3 + g) * 16 < C:   # C % 16 == 8: the last group's 8 channels
                                            y[0, o, jb * RB3 + p, T.Ramp((gb * OB3 + g) * 16, 1, 8)] = _residual(
                                                R, acc3[T.Ramp((p * OB3 + g) * 16, 1, 8)]
                                                - corr3[T.Ramp((gb * OB3 + g) * 16, 1, 8)],
                                                s3[T.Ramp((gb * OB3 + g) * 16, 1, 8)], b3[T.Ramp((gb * OB3 + g) * 16, 1, 8)],
                                                x[0, o, jb * RB3 + p, T.Ramp((gb * OB3 + g) * 16, 1, 8)], 8)

    return fused.without_attr("global_symbol")  # named by the module it is added to


# ---------------------------------------------------------------- finding the blocks in the rewritten module
class _NoMatch(Exception):
    """Not a block the fused kernel computes exactly (the message says why; logged at debug level)."""


def _op(value, name: str) -> bool:
    return isinstance(value, relax.Call) and isinstance(value.op, Op) and value.op.name == name


def _const(expr) -> np.ndarray:
    if not isinstance(expr, GenericConst):
        raise _NoMatch("a parameter is not a constant")
    return expr.value.numpy()


def _scalar(expr) -> float:
    v = _const(expr)
    if v.size != 1:
        raise _NoMatch("a residual scale or zero point is per channel")
    return v.reshape(())[()]


def _shape(expr) -> tuple[int, ...]:
    return tuple(int(s) for s in expr.ty.shape)


@dataclasses.dataclass(frozen=True)
class _Requant:
    """One ``qdq_rewrite`` requantize chain back from its uint8 result to the kernel call."""

    call: relax.Call          # the call_tir of the kernel
    corr: np.ndarray | None   # the zero-point correction subtracted from its accumulator
    scale: np.ndarray         # float32, broadcast to the channels
    bias: np.ndarray
    lo: int
    hi: int
    inner: tuple              # the chain's vars between the call and the result (each must have one user)


class _Matcher:
    """Reads one Relax function's bindings: what each var is bound to and how many bindings use it."""

    def __init__(self, func: relax.Function, mod):
        self.var2val = relax.analysis.get_var2val(func)
        self.uses = {var: len(users) for var, users in collect_users(func).items()}
        self.mod = mod

    def value(self, var, name: str, single_use: bool = True) -> relax.Call:
        """The call ``var`` is bound to, which must be ``name`` (and ``var``'s only use)."""
        v = self.var2val.get(var) if isinstance(var, relax.Var) else None
        if not _op(v, name):
            got = getattr(getattr(v, "op", None), "name", type(v).__name__)
            raise _NoMatch(f"expected {name.split('.')[-1]}, got {got}")
        if single_use and self.uses.get(var, 0) != 1:
            raise _NoMatch(f"an intermediate ({var.name}) has other users")
        return v

    def requant(self, out_var) -> _Requant:
        cast = self.value(out_var, "relax.astype", single_use=False)
        if str(cast.attrs.dtype) != "uint8":
            raise _NoMatch("a requantize is not to uint8")
        chain = []
        clip = self.value(v := cast.args[0], "relax.clip")
        chain.append(v)
        rnd = self.value(v := clip.args[0], "relax.round")
        chain.append(v)
        add = self.value(v := rnd.args[0], "relax.add")
        chain.append(v)
        mul = self.value(v := add.args[0], "relax.multiply")
        chain.append(v)
        tofloat = self.value(v := mul.args[0], "relax.astype")
        chain.append(v)
        acc, corr = tofloat.args[0], None
        if _op(self.var2val.get(acc), "relax.subtract"):
            sub = self.value(acc, "relax.subtract")
            chain.append(acc)
            acc, corr = sub.args[0], _const(sub.args[1])
        call = self.value(acc, "relax.call_tir")
        chain.append(acc)
        n = _shape(cast)[-1]
        return _Requant(call, None if corr is None else np.broadcast_to(corr, (1, 1, 1, n)).reshape(n).astype("int32"),
                        np.broadcast_to(_const(mul.args[1]), (1, 1, 1, n)).reshape(n).astype("float32"),
                        np.broadcast_to(_const(add.args[1]), (1, 1, 1, n)).reshape(n).astype("float32"),
                        int(clip.args[1].value), int(clip.args[2].value), tuple(chain))

    def kernel(self, call) -> tirx.PrimFunc:
        return self.mod[call.args[0]]


def _same(func, expected) -> bool:
    import tvm_ffi

    return tvm_ffi.structural_equal(func, expected)


def _pad_value(wd: np.ndarray, bd: np.ndarray) -> int | None:
    """The zero point the depthwise pads with, from its bias ``-z * sum(w)`` (``depthwise.bias``);
    None when no channel's weights have a nonzero sum. The caller checks it against the kernel."""
    sums = wd.astype(np.int64).reshape(-1, wd.shape[-1]).sum(0)[:bd.shape[0]]
    nz = np.nonzero(sums)[0]
    return None if nz.size == 0 else int(-bd[nz[0]] // sums[nz[0]])


def _match(m: _Matcher, q_var) -> tuple[relax.Var, Block, Args]:
    """The block ending in ``q_var = quantize(add(dequantize(p), dequantize(x)))``: its input
    ``x``, what the kernel bakes in, and its constant arguments; or :class:`_NoMatch`."""
    quant = m.value(q_var, "relax.quantize", single_use=False)
    if str(quant.attrs.out_dtype) != "uint8":
        raise _NoMatch("the residual is not quantized to uint8")
    add = m.value(quant.args[0], "relax.add")
    deq = [m.value(a, "relax.dequantize") for a in add.args]
    if any(str(d.attrs.out_dtype) != "float32" for d in deq):
        raise _NoMatch("the residual is not dequantized to float32")
    why = None
    for x_first in (False, True):
        try:
            return _match_order(m, quant, deq, x_first)
        except _NoMatch as e:
            why = e
    raise why


def _match_order(m: _Matcher, quant, deq, x_first: bool) -> tuple[relax.Var, Block, Args]:
    dq_p, dq_x = (deq[1], deq[0]) if x_first else deq
    project = m.requant(dq_p.args[0])
    if m.uses.get(dq_p.args[0], 0) != 1:
        raise _NoMatch("the projection's output has other users")
    x = dq_x.args[0]
    dw = m.requant(project.call.args[1][0])
    expand = m.requant(dw.call.args[1][0])
    if not expand.call.args[1][0].same_as(x):
        raise _NoMatch("the residual does not add the block's input")
    if str(x.ty.dtype) != "uint8" or len(_shape(x)) != 4 or _shape(x)[0] != 1:
        raise _NoMatch("the block input is not uint8 NHWC with batch 1")
    _, h, w, c = _shape(x)
    e = _shape(expand.call)[-1]
    if c % 8 or e % 16:
        raise _NoMatch(f"channels {c} (expanded {e}): the kernel needs multiples of 8 (16)")
    if _shape(project.call) != (1, h, w, c) or _shape(dw.call) != (1, h, w, e) or _shape(expand.call) != (1, h, w, e):
        raise _NoMatch("not stride 1 throughout")
    # the kernels must be exactly the 1x1 VNNI GEMMs and the 3x3 stride-1 pad-1 depthwise
    if not _same(m.kernel(expand.call), packed_dot.conv_dot_func((1, h, w, c), "uint8", e, _VNNI, (1, 1), (1, 1),
                                                                 (0, 0, 0, 0), 0)[0]):
        raise _NoMatch("the expand is not a 1x1 stride-1 conv on the VNNI kernel")
    if not _same(m.kernel(project.call), packed_dot.conv_dot_func((1, h, w, e), "uint8", c, _VNNI, (1, 1), (1, 1),
                                                                  (0, 0, 0, 0), 0)[0]):
        raise _NoMatch("the projection is not a 1x1 stride-1 conv on the VNNI kernel")
    wd, bd = _const(dw.call.args[1][1]), _const(dw.call.args[1][2])
    ze = _pad_value(wd, bd)
    if ze is None or not 0 <= ze <= 255 or not _same(
            m.kernel(dw.call), depthwise.depthwise_func((1, h, w, e), "uint8", (3, 3), (1, 1), (1, 1, 1, 1), ze)[0]):
        raise _NoMatch("the depthwise is not 3x3 stride 1 pad 1")
    if dw.corr is not None:
        raise _NoMatch("the depthwise accumulator has a separate correction")
    w1, w2 = _const(expand.call.args[1][1]), _const(project.call.args[1][1])
    args = Args(w1.reshape(e // 16, c // 4, 64), expand.corr if expand.corr is not None else np.zeros(e, "int32"),
                expand.scale, expand.bias, wd, bd, dw.scale, dw.bias, w2.reshape(w2.shape[0], e // 4, 64),
                project.corr if project.corr is not None else np.zeros(c, "int32"), project.scale, project.bias)
    res = Residual(project.lo, project.hi, int(_scalar(dq_p.args[2])), float(_scalar(dq_p.args[1])),
                   int(_scalar(dq_x.args[2])), float(_scalar(dq_x.args[1])), int(_scalar(quant.args[2])),
                   float(_scalar(quant.args[1])), x_first)
    return x, Block(h, w, c, e, ze, expand.lo, expand.hi, dw.lo, dw.hi, res), args


@mutator
class _Replace(PyExprMutator):
    def __init__(self, mod, plans: dict):
        super().__init__(mod)
        self.plans = plans  # the residual's quantize var -> (x, Block, Args)

    def visit_var_binding_(self, binding):
        plan = self.plans.get(binding.var)
        if plan is None:
            return super().visit_var_binding_(binding)
        x, blk, args = plan
        # the depthwise at the unfused kernel's width on this target (16 channels: AVX-512)
        lanes = default_schedule.depthwise_lanes(packed_dot.KERNELS["vnni"])
        gv = self.builder_.add_func(fused_func(blk, default_bands(blk.h), lanes), NAME)
        call = relax.call_tir(gv, [self.visit_expr(x), *(relax.const(a) for a in args.arrays())],
                              relax.TensorType((1, blk.h, blk.w, blk.c), "uint8"))
        if self.builder_.current_block_is_dataflow() and not isinstance(binding.var, relax.DataflowVar):
            new = self.builder_.emit_output(call, binding.var.name)
        else:
            new = self.builder_.emit(call, binding.var.name)
        self.set_var_remap(binding.var, new)


def fuse_blocks(mod):
    """Replace every inverted-residual block of ``mod`` (``fold_qdq``'s output for a VNNI target)
    by one call of :func:`fused_func`; returns ``(new module, blocks fused)``.

    A block is fused when it is exactly: a uint8 NHWC input ``x`` (batch 1, C a multiple of 8)
    -> the 1x1 stride-1 VNNI packed GEMM to E channels (a multiple of 16) and its requantize to
    uint8 -> the 3x3 stride-1 pad-1 depthwise kernel and its requantize -> the 1x1 VNNI GEMM
    back to C and its requantize -> ``quantize(add(dequantize(p), dequantize(x)))`` to uint8
    with per-tensor scales; every intermediate used once (only ``x`` and the result may have
    other users). Stride-2 blocks, blocks without a residual or with int8 activations, per-channel
    residual scales, other kernels: left as they are (logged at debug level).
    """
    plans = {}
    for gvar, func in mod.functions_items():
        if not isinstance(func, relax.Function):
            continue
        m = _Matcher(func, mod)
        for block in func.body.blocks:
            for binding in block.bindings:
                if not _op(binding.value, "relax.quantize"):
                    continue
                try:
                    plans[binding.var] = _match(m, binding.var)
                except _NoMatch as why:
                    _LOG.debug("%s/%s: not fused: %s", gvar.name_hint, binding.var.name, why)
    if not plans:
        return mod, 0
    out = mod.clone()
    replace = _Replace(mod, plans)
    for gvar, func in mod.functions_items():
        if isinstance(func, relax.Function):
            out[gvar] = replace.visit_expr(func)
    known = {g.name_hint for g in mod.get_global_vars()}
    for gv, f in replace.builder_.get().functions_items():
        if isinstance(f, tirx.PrimFunc) and gv.name_hint not in known:
            out[gv] = f
    out = relax.transform.DeadCodeElimination()(out)
    return out, len(plans)
