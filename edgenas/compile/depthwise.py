"""x86 integer depthwise conv: int8 in memory, int16 operands in registers, int32 accumulation.

Why: a Relax ``conv2d(int8, int8, groups=C, out_dtype="int32")`` legalizes to taps that widen
both operands to int32 and multiply with ``vpmulld`` (2 µops, 10 cycles latency on Intel), so a
tuned int8 depthwise conv ran 1.7x *slower* than the fp32 one (MobileNetV2-0.35 at 96x96, 640
trials: 267 vs 162 µs). With operands that LLVM can see are 16-bit it multiplies with
``pmaddwd`` instead. Casting to int16 in the Relax graph does not work: FuseOps moves the cast
into the producer's kernel, which then writes int16 and loses what the conv gains (measured:
whole model 4 % slower at 640 trials). Here the cast happens inside this kernel's own padding
block, so the producer keeps writing int8. Measured on one 48-channel 48x48 stride-2 layer, 64
trials, 1 thread: Relax int8 conv 62.7 µs, this kernel 35.0 µs, fp32 36.9 µs. It is exact.

The padding block also subtracts the activation's zero point (``x - z`` fits int16 for int8 and
uint8), so border taps are real zeros and the rewrite needs no ``z * sum(w)`` correction.
"""

from __future__ import annotations

import numpy as np


def depthwise_func(in_shape: tuple[int, int, int, int], in_dtype: str, kernel: tuple[int, int],
                   strides: tuple[int, int], padding: tuple[int, int, int, int], zero: int):
    """One TIR function ``(x int8/uint8 NCHW, w int16 (C, 1, KH, KW)) -> int32 NCHW``.

    ``padding`` is (top, left, bottom, right), Relax's conv2d order. Two blocks: ``pad_x`` (the
    int16 ``x - zero``, zero outside the image) and ``depthwise`` (the reduction over taps).
    op_pattern 4 (kOutEWiseFusable) lets FuseOps fuse the requantize epilogue into it.
    """
    from tvm import te, tirx

    from .packed_dot import int64_dims as i64

    n, c, h, w = in_shape
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = kernel, strides, padding
    oh, ow = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
    x = te.placeholder(i64(*in_shape), in_dtype, name="x")

    def pad(b, ch, i, j):
        inside = tirx.all(i >= pt, i < h + pt, j >= pl, j < w + pl)
        value = x[b, ch, i - pt, j - pl].astype("int16") - tirx.const(zero, "int16")
        return tirx.if_then_else(inside, value, tirx.const(0, "int16"))

    xp = te.compute(i64(n, c, h + pt + pb, w + pl + pr), pad, name="pad_x")
    wt = te.placeholder(i64(c, 1, kh, kw), "int16", name="w")
    rh = te.reduce_axis((tirx.const(0, "int64"), tirx.const(kh, "int64")), "rh")
    rw = te.reduce_axis((tirx.const(0, "int64"), tirx.const(kw, "int64")), "rw")
    y = te.compute(i64(n, c, oh, ow), lambda b, ch, i, j: te.sum(
        xp[b, ch, i * sh + rh, j * sw + rw].astype("int32") * wt[ch, 0, rh, rw].astype("int32"), axis=[rh, rw]),
        name="depthwise" if sw == 1 else "depthwise_strided")  # default_schedule.py vectorizes the rows of the first
    return te.create_prim_func([x, wt, y]).without_attr("global_symbol").with_attr("op_pattern", 4), (n, c, oh, ow)


BLOCK = 16  # channels per vector in the channel-blocked form (16 int32 lanes of AVX-512)


def depthwise_blocked_func(in_shape: tuple[int, int, int, int], in_dtype: str, kernel: tuple[int, int],
                           strides: tuple[int, int], padding: tuple[int, int, int, int], zero: int):
    """The same conv with channels as the vector lanes: ``(x NCHW, w int16 (C'/16, KH, KW, 16))
    -> int32 NCHW``, C' = C padded to 16.

    Why: the NCHW kernel vectorizes along an output row, so on MobileNetV2's small maps (6x6,
    3x3 with 144-960 channels) most lanes are empty, and a stride-2 row is a strided gather.
    Here ``pad_x`` copies 16 channels of the padded plane channels-last, ``(N, C'/16, H', W', 16)``
    int16 ``x - z``, the reduction multiplies whole vectors of 16 channels per tap (onnxruntime's
    depthwise design, docs/int8_kernels.md), and ``unpack_y`` writes NCHW for the requantize.
    """
    from tvm import te, tirx

    from .packed_dot import int64_dims as i64
    from .packed_dot import padded

    n, c, h, w = in_shape
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = kernel, strides, padding
    oh, ow = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
    groups = padded(c, BLOCK) // BLOCK
    x = te.placeholder(i64(*in_shape), in_dtype, name="x")

    def pad(b, g, i, j, lane):
        ch = g * BLOCK + lane
        inside = tirx.all(i >= pt, i < h + pt, j >= pl, j < w + pl, ch < c)
        value = x[b, tirx.min(ch, c - 1), i - pt, j - pl].astype("int16") - tirx.const(zero, "int16")
        return tirx.if_then_else(inside, value, tirx.const(0, "int16"))

    xp = te.compute(i64(n, groups, h + pt + pb, w + pl + pr, BLOCK), pad, name="pad_x")
    wt = te.placeholder(i64(groups, kh, kw, BLOCK), "int16", name="w")
    rh = te.reduce_axis((tirx.const(0, "int64"), tirx.const(kh, "int64")), "rh")
    rw = te.reduce_axis((tirx.const(0, "int64"), tirx.const(kw, "int64")), "rw")
    y = te.compute(i64(n, groups, oh, ow, BLOCK), lambda b, g, i, j, lane: te.sum(
        xp[b, g, i * sh + rh, j * sw + rw, lane].astype("int32") * wt[g, rh, rw, lane].astype("int32"), axis=[rh, rw]),
        name="depthwise_blocked")
    res = te.compute(i64(n, c, oh, ow), lambda b, ch, i, j: y[b, ch // BLOCK, i, j, ch % BLOCK], name="unpack_y")
    return te.create_prim_func([x, wt, res]).without_attr("global_symbol").with_attr("op_pattern", 4), (n, c, oh, ow)


BLOCKED_MAX_WIDTH = 14  # output rows this short waste a row vector's lanes: the channel-blocked form wins


def blocked_fits(out_shape) -> bool:
    """Whether the channel-blocked form is the faster one (measured on MobileNetV2's layers with
    the default schedules, 1 thread: 2-14x faster at 14x14 and below with stride 2 or at 7x7, slower at 28x28 and wider
    stride 1, where a row fills its vectors; scripts/bench_compile.py's profile shows the sum)."""
    return out_shape[3] <= BLOCKED_MAX_WIDTH


def blocked_weight(w_q: np.ndarray) -> np.ndarray:
    """(C, 1, KH, KW) int8 -> (C'/16, KH, KW, 16) int16, channels zero-padded."""
    c, _, kh, kw = w_q.shape
    cp = -(-c // BLOCK) * BLOCK
    full = np.zeros((cp, kh, kw), "int16")
    full[:c] = w_q[:, 0]
    return np.ascontiguousarray(full.reshape(cp // BLOCK, BLOCK, kh, kw).transpose(0, 2, 3, 1))


def applies(attrs, x_shape: list[int] | None, w_shape: tuple[int, ...]) -> bool:
    """A depthwise conv this kernel covers: NCHW, one input channel per group, no dilation."""
    return (x_shape is not None and len(x_shape) == 4 and int(attrs.groups) == x_shape[1] == w_shape[0]
            and w_shape[1] == 1 and attrs.data_layout == "NCHW" and all(int(d) == 1 for d in attrs.dilation))


def weight(w_q: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w_q.astype("int16"))
