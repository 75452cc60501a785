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
        name="depthwise")
    return te.create_prim_func([x, wt, y]).without_attr("global_symbol").with_attr("op_pattern", 4), (n, c, oh, ow)


def applies(attrs, x_shape: list[int] | None, w_shape: tuple[int, ...]) -> bool:
    """A depthwise conv this kernel covers: NCHW, one input channel per group, no dilation."""
    return (x_shape is not None and len(x_shape) == 4 and int(attrs.groups) == x_shape[1] == w_shape[0]
            and w_shape[1] == 1 and attrs.data_layout == "NCHW" and all(int(d) == 1 for d in attrs.dilation))


def weight(w_q: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w_q.astype("int16"))
