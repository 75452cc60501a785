"""x86 integer depthwise conv: uint8 in memory, ``vpmaddwd`` on zero-extended bytes, int32 accumulation.

Why: a Relax ``conv2d(int8, int8, groups=C, out_dtype="int32")`` legalizes to taps that widen
both operands to int32 and multiply with ``vpmulld`` (2 µops, 10 cycles latency on Intel), so a
tuned int8 depthwise conv ran 1.7x *slower* than the fp32 one (MobileNetV2-0.35 at 96x96, 640
trials: 267 vs 162 µs). This kernel keeps the activation as *unsigned* bytes (int8 enters as
``x + 128``, the packed GEMM's convention) and the weight as int16. A zero-extended byte has its
upper 24 bits zero and a sign-extended int16 has 17 sign bits, so LLVM proves the product fits
``vpmaddwd`` (one µop, 8 products per 256-bit vector; onnxruntime's AVX2 depthwise kernel uses
the same trick). An earlier form subtracted the zero point in the kernel (int16 ``x - z``): both
operands were then signed 16-bit and LLVM chose ``vpmovsxwd`` + ``vpmulld``, and its int16
padded copy of the input cost as much as the taps on stride-2 layers (docs/int8_kernels.md,
"Depthwise").

Padding taps read the zero point (as uint8), so they are real zeros once the per-channel
``bias = -z * sum(w)`` is added in the output block; the function returns the accumulator of
``x - z``, as every integer op of the rewrite does. Casting in the Relax graph instead does not
work: FuseOps moves the cast into the producer's kernel, which then writes the wider type.
"""

from __future__ import annotations

import numpy as np


BLOCK = 16  # channels per vector (16 int32 lanes of AVX-512); channels are padded to it


def depthwise_func(in_shape: tuple[int, int, int, int], in_dtype: str, kernel: tuple[int, int],
                   strides: tuple[int, int], padding: tuple[int, int, int, int], zero: int):
    """One TIR function ``(x int8/uint8 NHWC, w int16 (KH, KW, C'), bias int32 (C,)) -> int32
    NHWC``, C' = C padded to :data:`BLOCK`; ``bias`` is :func:`bias` of the same weight.

    Channels are the vector lanes (onnxruntime's depthwise design, docs/int8_kernels.md): a 3x3
    or 6x6 map wastes no lanes, and a stride-2 tap reads 16 contiguous channels, not a strided
    row. ``padding`` is (top, left, bottom, right), Relax's conv2d order. Two blocks: ``pad_x``
    (the uint8 activation, the zero point outside the image and in the padded channels) and
    ``depthwise`` (the reduction over taps); ``unpack_y`` adds the bias and drops the padded
    channels.
    op_pattern 4 (kOutEWiseFusable) lets FuseOps fuse the requantize epilogue into it.
    """
    from tvm import te, tirx

    from .packed_dot import gemm_zero, padded
    from .packed_dot import int64_dims as i64

    n, h, w, c = in_shape
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = kernel, strides, padding
    oh, ow = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
    cp = padded(c, BLOCK)
    x = te.placeholder(i64(*in_shape), in_dtype, name="x")

    zu = gemm_zero(in_dtype, zero)

    def pad(b, i, j, ch):
        inside = tirx.all(i >= pt, i < h + pt, j >= pl, j < w + pl, ch < c)
        value = x[b, i - pt, j - pl, tirx.min(ch, c - 1)]
        if in_dtype == "int8":  # x + 128 as uint8: the bit pattern with its top bit flipped
            value = (value.astype("int16") + tirx.const(128, "int16")).astype("uint8")
        return tirx.if_then_else(inside, value, tirx.const(zu, "uint8"))

    xp = te.compute(i64(n, h + pt + pb, w + pl + pr, cp), pad, name="pad_x")
    wt = te.placeholder(i64(kh, kw, cp), "int16", name="w")
    rh = te.reduce_axis((tirx.const(0, "int64"), tirx.const(kh, "int64")), "rh")
    rw = te.reduce_axis((tirx.const(0, "int64"), tirx.const(kw, "int64")), "rw")
    y = te.compute(i64(n, oh, ow, cp), lambda b, i, j, ch: te.sum(
        xp[b, i * sh + rh, j * sw + rw, ch].astype("int32") * wt[rh, rw, ch].astype("int32"), axis=[rh, rw]),
        name="depthwise")
    bias_t = te.placeholder(i64(c), "int32", name="bias")
    res = te.compute(i64(n, oh, ow, c), lambda b, i, j, ch: y[b, i, j, ch] + bias_t[ch], name="unpack_y")
    return te.create_prim_func([x, wt, bias_t, res]).without_attr("global_symbol").with_attr("op_pattern", 4), (n, oh, ow, c)


def weight(w_q: np.ndarray) -> np.ndarray:
    """(C, 1, KH, KW) int8 -> (KH, KW, C') int16, channels zero-padded to :data:`BLOCK`."""
    c, _, kh, kw = w_q.shape
    full = np.zeros((kh, kw, -(-c // BLOCK) * BLOCK), "int16")
    full[:, :, :c] = w_q[:, 0].transpose(1, 2, 0)
    return full


def bias(w_q: np.ndarray, in_dtype: str, zero: int) -> np.ndarray:
    """(C,) int32 ``-z * sum(w)`` per channel, z the zero point as the kernel's uint8 sees it:
    added to ``sum(w * x)`` it gives ``sum(w * (x - z))``, padding taps included."""
    from .packed_dot import gemm_zero

    return (-gemm_zero(in_dtype, zero) * w_q.reshape(w_q.shape[0], -1).astype(np.int64).sum(1)).astype("int32")


def applies(attrs, x_shape: list[int] | None, w_shape: tuple[int, ...]) -> bool:
    """A depthwise conv this kernel covers: NCHW, one input channel per group, no dilation."""
    return (x_shape is not None and len(x_shape) == 4 and int(attrs.groups) == x_shape[1] == w_shape[0]
            and w_shape[1] == 1 and attrs.data_layout == "NCHW" and all(int(d) == 1 for d in attrs.dilation))
