"""Recognise the float-simulated integer ops that TVM's Relax ONNX importer produces.

The importer turns a QDQ/QCDQ graph into ``relax.dequantize`` feeding a *float* conv2d or
matmul (docs/tvm.md §1). This module decides, for one such op, whether it can run in
integer arithmetic and collects what the rewrite needs (:class:`Anchor`); when it cannot, it
returns the reason as a sentence, which ends up in ``FoldReport.fallbacks``.

An op is foldable when the activation is ``dequantize(x_q)`` (``x_q`` int8 or uint8) with one
zero point and a per-tensor scale, and the weight is ``dequantize(w_q)`` with ``w_q`` int8 and all
zero points 0, per-tensor or per output channel. Symmetric weights are what makes one
``z_x * sum(w)`` correction enough: an asymmetric weight would add ``z_w * sum(x)``, a term that
depends on the data at every output pixel.

Activation scales given per channel (along the input channels: axis 1 of a conv2d, the last
axis of a matmul) fold where the arithmetic stays exact (:func:`_activation`):

* all equal: that is a per-tensor scale;
* a depthwise conv: output channel ``o`` reads input channel ``o // m`` only, so ``s_x[o // m]``
  joins the per-output-channel requantize scale (``Anchor.x_scale`` is then an array);
* any other conv or matmul whose scales are integer multiples ``k_c`` of the smallest one
  ``s_0`` (power-of-two "fixed point" scales): ``sum_c s_x[c] w[o, c] x[c] = s_0 sum_c (k_c w[o,
  c]) x[c]``, so the weight becomes ``k_c * w`` (``Anchor.x_factors``; the rewrite multiplies it
  in when the weight is a constant and the products still fit int8).

Per-channel zero points fold only when they are all equal: the rewrite pads with one zero point
and removes it with one ``z_x * sum(w)`` term per output channel.
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
    against the op's output: (1, K, 1, 1) for conv2d, (N,) for matmul. ``x_scale`` is a float,
    or for a depthwise conv with per-channel activation scales the scale each output channel
    reads, shaped like a conv2d ``w_scale``. ``x_factors``, when not None, are the integer
    ratios of per-channel activation scales to ``x_scale`` (the smallest), shaped to broadcast
    against ``w_q``: the weight the integer op uses is ``w_q * x_factors``, which the rewrite
    computes (``qdq_rewrite``) before anything reads ``w_q``.
    """

    kind: str
    call: relax.Call
    x_q: relax.Expr
    x_scale: float | np.ndarray
    x_zero: int
    w_q: relax.Expr
    w_scale: np.ndarray
    channels: int
    transposed: bool = False
    x_factors: np.ndarray | None = None


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
    act = _activation(kind, call, x_q, int(m[_X].attrs.axis), sx, zx, w_shape, transposed)
    if isinstance(act, str):
        return act
    x_scale, x_zero, x_factors = act
    return Anchor(kind, call, x_q, x_scale, x_zero, w_q, sw.astype("float64"), channels, transposed, x_factors)


MAX_FACTOR = 128  # a larger scale ratio takes any nonzero int8 weight out of [-128, 127]


def _activation(kind: str, call: relax.Call, x_q, axis: int, sx: np.ndarray, zx: np.ndarray, w_shape: list[int],
                transposed: bool) -> tuple[float | np.ndarray, int, np.ndarray | None] | str:
    """``(x_scale, x_zero, x_factors)`` of the activation's dequantize (see :class:`Anchor`), or
    the reason its per-channel scales or zero points cannot fold."""
    sx, zx = sx.reshape(-1), zx.reshape(-1)
    if np.all(sx == sx[0]) and np.all(zx == zx[0]):  # per-tensor, or one value repeated per channel
        return float(sx[0]), int(zx[0]), None
    x_shape = _shape(x_q)
    if x_shape is None:
        return "activation scales or zero points are per channel and the input shape is not static"
    ndim, axis = len(x_shape), axis % max(len(x_shape), 1)
    if kind == "conv2d" and axis != 1:
        return f"activation scales or zero points are per channel along axis {axis}, not the input channels (1)"
    if kind == "matmul" and axis != ndim - 1:
        return (f"activation scales or zero points are per channel along axis {axis}, not the reduction axis "
                f"({ndim - 1})")
    cin = x_shape[axis]
    if sx.size not in (1, cin) or zx.size not in (1, cin):
        return "activation scales or zero points do not match the input channels"
    sx, zx = np.broadcast_to(sx.astype("float64"), (cin,)), np.broadcast_to(zx, (cin,))
    if np.any(zx != zx[0]):
        return ("activation zero points differ per channel; the integer kernels need one zero point (they pad "
                "with it and subtract z * sum(w))")
    zero = int(zx[0])
    if kind == "conv2d" and int(call.attrs.groups) == cin and w_shape[1] == 1:
        # depthwise: output channel o reads input channel o // m only
        return np.repeat(sx, w_shape[0] // cin).reshape(1, w_shape[0], 1, 1), zero, None
    s0 = sx.min()
    if not (s0 > 0 and np.all(np.isfinite(sx))):
        return "activation scales per channel are not all positive and finite"
    ratio = sx.max() / s0
    if ratio > MAX_FACTOR:
        return f"activation scales per channel differ by up to {ratio:.3g}x; an int8 weight cannot absorb that"
    k = np.rint(sx / s0)
    if np.any(k * s0 != sx):  # exact test: k has at most 8 significant bits, s0 (a float32) 24
        return (f"activation scales per channel differ by non-integer ratios (up to {ratio:.3g}x); an integer "
                f"weight cannot absorb them")
    k = k.astype("int64")
    if kind == "conv2d":  # weight (O, C/g, KH, KW): output o of group o // (O/g) reads channel g*(C/g) + j
        groups = int(call.attrs.groups)
        per_group, outs = cin // groups, w_shape[0] // groups
        factors = k.reshape(groups, per_group)[np.arange(w_shape[0]) // outs].reshape(w_shape[0], per_group, 1, 1)
    else:  # Gemm weight (N, K), MatMul weight (K, N)
        factors = k.reshape(1, cin) if transposed else k.reshape(cin, 1)
    return float(s0), zero, factors
