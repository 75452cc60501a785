"""Global average pooling on the quantized tensor: integer sum, one rescale.

The importer turns GlobalAveragePool (and ReduceMean) on a dequantized tensor into
``mean(dequantize(x_q, s, z))``: the producer kernel then has to write float32 (the dequantized
tensor) only for the pool to read it back. With a per-tensor scale the mean is affine in the
integers,

    mean(s * (x_q - z)) = (sum(x_q) - n * z) * (s / n)

so it runs as an int32 sum of the int8/uint8 tensor (exact) and one float multiply; the
dequantize loses its last user, and the producer's fused kernel ends at its ``quantize``,
writing int8 instead of float32. A residual add needs no such rewrite: FuseOps already puts
``dequantize -> add -> quantize`` in one kernel that reads and writes integers.
"""

from __future__ import annotations

import numpy as np
from tvm import relax
from tvm.relax.dpl import is_const, is_op, wildcard

_XQ, _S, _Z = wildcard(), is_const(), is_const()
_DQ = is_op("relax.dequantize")(_XQ, _S, _Z)
_MEAN = is_op("relax.mean")(_DQ)


def match_mean(call: relax.Call, var2val) -> tuple | None:
    """``(x_q var, scale, zero point, element count)`` for a foldable mean, else None."""
    m = _MEAN.extract_matched_expr(call, var2val)
    if m is None:
        return None
    x_q = m[_DQ].args[0]
    scale, zero = m[_S].value.numpy(), m[_Z].value.numpy()
    shape = getattr(x_q.ty, "shape", None)
    if str(x_q.ty.dtype) not in ("int8", "uint8") or scale.size != 1 or zero.size != 1 or shape is None:
        return None
    if str(call.ty.dtype) != "float32":
        return None
    ndim = len(shape)
    axes = range(ndim) if call.attrs.axis is None else [int(a) % ndim for a in call.attrs.axis]
    try:
        count = int(np.prod([int(shape[a]) for a in axes]))
    except (TypeError, ValueError):
        return None  # symbolic extent
    return x_q, float(scale.reshape(-1)[0]), int(zero.reshape(-1)[0]), count


def int_mean(call: relax.Call, x_q, scale: float, zero: int, count: int) -> relax.Expr:
    """``(sum(int32(x_q)) - count * zero) * (scale / count)`` with the mean's axes."""
    axis = None if call.attrs.axis is None else [int(a) for a in call.attrs.axis]
    total = relax.op.sum(relax.op.astype(x_q, "int32"), axis=axis, keepdims=bool(call.attrs.keepdims))
    if zero != 0:
        total = relax.op.subtract(total, relax.const(count * zero, "int32"))
    return relax.op.multiply(relax.op.astype(total, "float32"),
                             relax.const(np.float32(np.float64(scale) / count)))
