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


BLOCK = 16  # channels per vector (16 int32 lanes of AVX-512); channels are padded to it


def depthwise_func(in_shape: tuple[int, int, int, int], in_dtype: str, kernel: tuple[int, int],
                   strides: tuple[int, int], padding: tuple[int, int, int, int], zero: int):
    """One TIR function ``(x int8/uint8 NHWC, w int16 (KH, KW, C')) -> int32 NHWC``, C' = C
    padded to :data:`BLOCK`.

    Channels are the vector lanes (onnxruntime's depthwise design, docs/int8_kernels.md): a 3x3
    or 6x6 map wastes no lanes, and a stride-2 tap reads 16 contiguous channels, not a strided
    row. ``padding`` is (top, left, bottom, right), Relax's conv2d order. Two blocks: ``pad_x``
    (the int16 ``x - zero``, zero outside the image and in the padded channels) and ``depthwise``
    (the reduction over taps); ``unpack_y`` drops the padded channels.
    op_pattern 4 (kOutEWiseFusable) lets FuseOps fuse the requantize epilogue into it.
    """
    from tvm import te, tirx

    from .packed_dot import int64_dims as i64
    from .packed_dot import padded

    n, h, w, c = in_shape
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = kernel, strides, padding
    oh, ow = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
    cp = padded(c, BLOCK)
    x = te.placeholder(i64(*in_shape), in_dtype, name="x")

    def pad(b, i, j, ch):
        inside = tirx.all(i >= pt, i < h + pt, j >= pl, j < w + pl, ch < c)
        value = x[b, i - pt, j - pl, tirx.min(ch, c - 1)].astype("int16") - tirx.const(zero, "int16")
        return tirx.if_then_else(inside, value, tirx.const(0, "int16"))

    xp = te.compute(i64(n, h + pt + pb, w + pl + pr, cp), pad, name="pad_x")
    wt = te.placeholder(i64(kh, kw, cp), "int16", name="w")
    rh = te.reduce_axis((tirx.const(0, "int64"), tirx.const(kh, "int64")), "rh")
    rw = te.reduce_axis((tirx.const(0, "int64"), tirx.const(kw, "int64")), "rw")
    y = te.compute(i64(n, oh, ow, cp), lambda b, i, j, ch: te.sum(
        xp[b, i * sh + rh, j * sw + rw, ch].astype("int32") * wt[rh, rw, ch].astype("int32"), axis=[rh, rw]),
        name="depthwise")
    res = te.compute(i64(n, oh, ow, c), lambda b, i, j, ch: y[b, i, j, ch], name="unpack_y")
    return te.create_prim_func([x, wt, res]).without_attr("global_symbol").with_attr("op_pattern", 4), (n, oh, ow, c)


def weight(w_q: np.ndarray) -> np.ndarray:
    """(C, 1, KH, KW) int8 -> (KH, KW, C') int16, channels zero-padded to :data:`BLOCK`."""
    c, _, kh, kw = w_q.shape
    full = np.zeros((kh, kw, -(-c // BLOCK) * BLOCK), "int16")
    full[:, :, :c] = w_q[:, 0].transpose(1, 2, 0)
    return full


def applies(attrs, x_shape: list[int] | None, w_shape: tuple[int, ...]) -> bool:
    """A depthwise conv this kernel covers: NCHW, one input channel per group, no dilation."""
    return (x_shape is not None and len(x_shape) == 4 and int(attrs.groups) == x_shape[1] == w_shape[0]
            and w_shape[1] == 1 and attrs.data_layout == "NCHW" and all(int(d) == 1 for d in attrs.dilation))
