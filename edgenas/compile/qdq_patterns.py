"""Recognise the float-simulated integer ops that TVM's Relax ONNX importer produces.

The importer turns a QDQ/QCDQ graph into ``relax.dequantize`` feeding a *float* conv2d or
matmul (docs/tvm.md §1). This module decides, for one such op, whether it can run in
integer arithmetic and collects what the rewrite needs (:class:`Anchor`); when it cannot, it
returns the reason as a sentence, which ends up in ``FoldReport.fallbacks``.

An op is foldable when the activation is ``dequantize(x_q)`` with a per-tensor scale and zero
point (``x_q`` int8 or uint8) and the weight is ``dequantize(w_q)`` with ``w_q`` int8 and all
zero points 0, per-tensor or per output channel. Symmetric weights are what makes one
``z_x * sum(w)`` correction enough: an asymmetric weight would add ``z_w * sum(x)``, a term that
depends on the data at every output pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import relax
from tvm.ir import Op
from tvm.ir.expr import GenericConst
from tvm.relax.dpl import is_const, is_op, wildcard

CONV_OPS = ("relax.nn.conv1d", "relax.nn.conv2d", "relax.nn.conv3d",
            "relax.nn.conv1d_transpose", "relax.nn.conv2d_transpose")
MATMUL_OPS = ("relax.matmul",)


def _dq_pattern():
    q, scale, zero = wildcard(), is_const(), is_const()
    return is_op("relax.dequantize")(q, scale, zero), q, scale, zero


_X, _XQ, _SX, _ZX = _dq_pattern()
_W, _WQ, _SW, _ZW = _dq_pattern()
_WT = is_op("relax.permute_dims")(_W)
_PATTERNS = {  # (op, weight transposed?) -> DPL pattern, tried in this order
    ("conv2d", False): is_op("relax.nn.conv2d")(_X, _W),
    ("matmul", True): is_op("relax.matmul")(_X, _WT),   # Gemm(transB=1): matmul(dq(x), dq(w).T)
    ("matmul", False): is_op("relax.matmul")(_X, _W),   # MatMul: weight stored (K, N)
}
_ANY_DQ = is_op("relax.dequantize")(wildcard(), wildcard(), wildcard())


@dataclass(frozen=True)
class Anchor:
    """A float conv2d/matmul whose operands are dequantized integers, ready to be rewritten.

    ``w_q`` is the int8 weight as the graph has it (OIHW for conv2d; (N, K) for a Gemm, which
    sets ``transposed``, else (K, N)); the rewrite transposes the int8 tensor, not the floats.
    ``w_scale`` is a scalar or one scale per output channel, already shaped to broadcast
    against the op's output: (1, K, 1, 1) for conv2d, (N,) for matmul.
    """

    kind: str
    call: relax.Call
    x_q: relax.Expr
    x_scale: float
    x_zero: int
    w_q: relax.Expr
    w_scale: np.ndarray
    channels: int
    transposed: bool = False


def _np(expr) -> np.ndarray:
    return expr.value.numpy()


def _dtype(expr) -> str:
    return str(expr.ty.dtype)


def _shape(expr) -> list[int] | None:
    shape = getattr(expr.ty, "shape", None)
    try:
        return [int(s) for s in shape]
    except (TypeError, ValueError):
        return None


def _diagnose(call: relax.Call, var2val) -> str:
    """Say why no foldable pattern matched (input/weight not dequantized, computed scales)."""
    names = ("input", "weight")
    for name, arg in zip(names, call.args[:2]):
        if _dtype(arg) in ("int8", "uint8", "int32"):
            continue
        inner = var2val.get(arg, arg) if isinstance(arg, relax.Var) else arg
        if isinstance(inner, relax.Call) and isinstance(inner.op, Op) and inner.op.name == "relax.permute_dims":
            inner = inner.args[0]
            inner = var2val.get(inner, inner) if isinstance(inner, relax.Var) else inner
        if not _ANY_DQ.match(inner, var2val):
            return f"{name} is float, not dequantized from an integer tensor"
        if not all(isinstance(a, GenericConst) for a in inner.args[1:]):
            return f"{name} scale or zero point is computed at run time, not a constant"
    return "operands do not have the dequantize(x) . dequantize(w) form"


def match_anchor(call: relax.Call, var2val) -> Anchor | str:
    """Return an :class:`Anchor` for ``call`` or the reason it has to stay float."""
    op = call.op.name
    if op in CONV_OPS and op != "relax.nn.conv2d":
        return f"{op.split('.')[-1]} has no integer rewrite (only conv2d)"
    for (kind, transposed), pattern in _PATTERNS.items():
        m = pattern.extract_matched_expr(call, var2val)
        if m is not None:
            break
    else:
        return _diagnose(call, var2val)
    # m[_XQ] is the value bound to x_q's var (DPL looks through bindings); the rewrite must
    # reference the var itself, or it would re-emit the quantize.
    x_q, w_q = m[_X].args[0], m[_W].args[0]
    sx, zx, sw, zw = _np(m[_SX]), _np(m[_ZX]), _np(m[_SW]), _np(m[_ZW])
    if _dtype(x_q) not in ("int8", "uint8"):
        return f"activation is {_dtype(x_q)}, not int8/uint8"
    if _dtype(w_q) != "int8":
        return f"weight is {_dtype(w_q)}; the integer rewrite needs symmetric int8 weights"
    if sx.size != 1 or zx.size != 1:
        return "activation scale or zero point is per-channel; needs per-tensor"
    if np.any(zw != 0):
        return "weight zero point is nonzero (asymmetric weights)"
    if _dtype(call) != "float32":
        return f"output is {_dtype(call)}, only float32 outputs are rewritten"
    w_shape = _shape(w_q)
    if w_shape is None:
        return "weight shape is not static"
    w_axis = int(m[_W].attrs.axis)
    if kind == "conv2d":
        a = call.attrs
        if (a.data_layout, a.kernel_layout, a.out_layout) != ("NCHW", "OIHW", "NCHW"):
            return f"layout {a.data_layout}/{a.kernel_layout} (only NCHW/OIHW)"
        channels, channel_axis, bcast = w_shape[0], 0, (1, w_shape[0], 1, 1)
    else:
        if len(w_shape) != 2:
            return f"weight has rank {len(w_shape)}; only 2-D weights are rewritten"
        if transposed:
            axes = m[_WT].attrs.axes
            if axes is not None and [int(i) for i in axes] != [1, 0]:
                return "weight permutation is not a transpose"
        channels, channel_axis, bcast = w_shape[0] if transposed else w_shape[1], 0 if transposed else 1, (-1,)
    if sw.size != 1:
        if sw.size != channels or w_axis % len(w_shape) != channel_axis:
            return "weight scales are not per output channel"
        sw = sw.reshape(bcast)
    else:
        sw = sw.reshape(())
    return Anchor(kind, call, x_q, float(sx.reshape(-1)[0]), int(zx.reshape(-1)[0]), w_q,
                  sw.astype("float64"), channels, transposed)
