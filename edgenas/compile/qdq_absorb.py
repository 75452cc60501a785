"""Absorb the per-channel affine ops that follow a quantized conv/matmul into its requantize.

After the integer op, the float graph typically continues with ``+ bias`` (ORT and brevitas
both dequantize an int32 bias and add it), a BatchNormalization (brevitas exports keep it after
the conv) and, for a Gemm with alpha != 1, a constant multiply. Each is ``y * k + c`` with k, c
constant per output channel, so the whole chain collapses into the one ``acc * scale + bias``
of the requantize. An op is absorbed only when the previous result has it as its single user
and when it does not change the output's type (no broadcasting into a bigger tensor); the chain
stops at the first op that is not such an affine step: ReLU, Clip, quantize, a residual add.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm_ffi import structural_equal
from tvm import relax
from tvm.ir import Op

from .qdq_consts import ConstEval
from .qdq_patterns import Anchor


@dataclass(frozen=True)
class Requant:
    """``float(acc) * scale + bias``. ``scale`` is float64, rounded to float32 once when emitted;
    ``bias`` is a float64 array when numpy could evaluate it, else a static Relax expression
    (left to FoldConstant), or None."""

    scale: np.ndarray
    bias: object = None

    def bias_expr(self) -> relax.Expr | None:
        return _expr(self.bias)


def _expr(bias):
    return relax.const(bias.astype("float32")) if isinstance(bias, np.ndarray) else bias


def _plus(bias, term):
    if bias is None:
        return term
    if isinstance(bias, np.ndarray) and isinstance(term, np.ndarray):
        return bias + term
    return relax.op.add(_expr(bias), _expr(term))


def _times(bias, k: np.ndarray):
    if bias is None or isinstance(bias, np.ndarray):
        return None if bias is None else bias * k
    return relax.op.multiply(bias, relax.const(k.astype("float32")))


def collect_users(func: relax.Function) -> dict:
    """Map each var to the bindings that read it; ``None`` stands for the function's result."""
    users: dict = {}
    for block in func.body.blocks:
        for binding in block.bindings:
            for var in relax.analysis.free_vars(binding.value):
                users.setdefault(var, []).append(binding)
    for var in relax.analysis.free_vars(func.body.body):
        users.setdefault(var, []).append(None)
    return users


def _shape(expr) -> tuple[int, ...] | None:
    try:
        return tuple(int(s) for s in expr.ty.shape)
    except (AttributeError, TypeError, ValueError):
        return None


class _Layout:
    """Where the output channel is, and the broadcast shape of per-channel constants."""

    def __init__(self, anchor: Anchor, out_ndim: int):
        self.ndim, self.channels = out_ndim, anchor.channels
        self.axis = 1 if anchor.kind == "conv2d" else out_ndim - 1
        self.bcast = (1, anchor.channels, 1, 1) if anchor.kind == "conv2d" else (anchor.channels,)

    def per_channel(self, shape) -> tuple[int, ...] | None:
        """The shape a constant of ``shape`` takes in the requantize, or None if it varies
        along a non-channel axis of the output (then it cannot fold into a per-channel scale)."""
        if shape is None or len(shape) > self.ndim:
            return None
        if int(np.prod(shape)) == 1:
            return ()
        padded = (1,) * (self.ndim - len(shape)) + tuple(shape)
        if padded[self.axis] != self.channels or any(d != 1 for i, d in enumerate(padded) if i != self.axis):
            return None
        return self.bcast


def _other_operand(call, cur):
    a, b = call.args[0], call.args[1]
    return (b, True) if a.same_as(cur) else (a, False)


def absorb_tail(cur, anchor: Anchor, ev: ConstEval, users) -> tuple[relax.Var, Requant]:
    """Follow ``cur`` (the anchor's var) through absorbable ops; return the chain's last var
    (the binding the integer expression replaces) and the requantize it computes."""
    layout = _Layout(anchor, int(cur.ty.ndim))
    scale, bias = anchor.x_scale * anchor.w_scale, None
    while len(users.get(cur, ())) == 1 and users[cur][0] is not None:
        binding = users[cur][0]
        call = binding.value
        if not (isinstance(call, relax.Call) and isinstance(call.op, Op)):
            break
        name = call.op.name
        if name != "relax.nn.batch_norm" and not structural_equal(binding.var.ty, cur.ty):
            break  # the op broadcasts the result into a bigger tensor
        if name in ("relax.add", "relax.subtract"):
            other, cur_first = _other_operand(call, cur)
            shape = layout.per_channel(_shape(other))
            if shape is None or (name == "relax.subtract" and not cur_first):
                break
            value = ev(other)
            if value is not None:
                term = value.astype("float64").reshape(shape)
            elif ev.static(other):
                term = relax.op.reshape(other, shape)
            else:
                break
            if name == "relax.subtract":
                term = -term if isinstance(term, np.ndarray) else relax.op.negative(term)
            bias = _plus(bias, term)
        elif name == "relax.multiply":
            other, _ = _other_operand(call, cur)
            k, shape = ev(other), layout.per_channel(_shape(other))
            if k is None or shape is None:
                break
            k = k.astype("float64").reshape(shape)
            scale, bias = scale * k, _times(bias, k)
        elif name == "relax.nn.batch_norm":
            folded = _batch_norm(call, binding.var, layout, ev, users)
            if folded is None:
                break
            (k, c), binding = folded
            scale, bias = scale * k, _plus(_times(bias, k), c)
        else:
            break
        cur = binding.var
    return cur, Requant(np.asarray(scale, dtype="float64"), bias)


def _batch_norm(call, tuple_var, layout: _Layout, ev: ConstEval, users):
    """Inference BatchNorm as ``y * k + c`` per channel, plus the ``[0]`` binding that ends it."""
    a = call.attrs
    getters = users.get(tuple_var, [])
    if (int(a.axis) % layout.ndim != layout.axis or getattr(a, "training", False) or len(getters) != 1
            or getters[0] is None or not isinstance(getters[0].value, relax.TupleGetItem)
            or int(getters[0].value.index) != 0):
        return None
    gamma, beta, mean, var = (ev(x) for x in call.args[1:5])
    if any(p is None or p.shape != (layout.channels,) for p in (gamma, beta, mean, var)):
        return None
    gamma = gamma if a.scale else np.ones_like(gamma)
    beta = beta if a.center else np.zeros_like(beta)
    gamma, beta, mean, var = (p.astype("float64") for p in (gamma, beta, mean, var))
    k = gamma / np.sqrt(var + float(a.epsilon))
    c = beta - mean * k
    return (k.reshape(layout.bcast), c.reshape(layout.bcast)), getters[0]


@dataclass(frozen=True)
class OutputQuant:
    """The activation and ``quantize`` after a requantize, folded into it.

    ``quantize(act(acc * scale + bias), s, z)`` is ``clip(round(acc * scale/s + (bias/s + z)),
    lo, hi)`` cast to ``dtype``: ReLU and Clip become the integer bounds ``lo``/``hi`` (rounding is
    monotone, so clipping before or after it gives the same integers) and the division by ``s``
    moves into the constants. One multiply-add, a round and a clip per output instead of a
    multiply, add, clip, divide, round, add and clip; the integer result can differ from
    computing in the original order only where float rounding moves a value across a .5 tie.
    """

    scale: float
    zero: int
    dtype: str
    lo: int
    hi: int


_QRANGE = {"int8": (-128, 127), "uint8": (0, 255)}


def _activation_bounds(call, ev: ConstEval) -> tuple[float, float] | None:
    name = call.op.name
    if name == "relax.nn.relu":
        return 0.0, float("inf")
    if name == "relax.clip":
        bounds = [_scalar(a, ev) for a in call.args[1:3]]
        return None if None in bounds else tuple(bounds)
    return None


def _scalar(arg, ev: ConstEval) -> float | None:
    """A clip bound: an IntImm / FloatImm (Relax's clip in 0.27) or a one-element constant."""
    if isinstance(getattr(arg, "value", None), (int, float)):
        return float(arg.value)
    value = ev(arg)
    return None if value is None or value.size != 1 else float(value.reshape(-1)[0])


def absorb_output_quantize(tail, ev: ConstEval, users) -> tuple[relax.Var, OutputQuant] | None:
    """If ``tail``'s value only feeds ``[ReLU | Clip] -> quantize`` with a constant per-tensor
    scale and zero point, return the quantize's var (the binding the integer expression then
    replaces) and the folded :class:`OutputQuant`; else None."""
    lo_hi, cur = (-np.inf, np.inf), tail
    for _ in range(2):
        if len(users.get(cur, ())) != 1 or users[cur][0] is None:
            return None
        binding = users[cur][0]
        call = binding.value
        if not (isinstance(call, relax.Call) and isinstance(call.op, Op)):
            return None
        if call.op.name == "relax.quantize":
            scale, zero = ev(call.args[1]), ev(call.args[2])
            dtype = str(call.attrs.out_dtype)
            if (scale is None or zero is None or scale.size != 1 or zero.size != 1 or dtype not in _QRANGE
                    or not call.args[0].same_as(cur)):
                return None
            s, z = np.float32(scale.reshape(-1)[0]), int(zero.reshape(-1)[0])
            qmin, qmax = _QRANGE[dtype]
            # integer bounds of the activation, rounded as the quantize would round them
            lo = qmin if np.isinf(lo_hi[0]) else max(qmin, int(np.rint(np.float32(lo_hi[0]) / s)) + z)
            hi = qmax if np.isinf(lo_hi[1]) else min(qmax, int(np.rint(np.float32(lo_hi[1]) / s)) + z)
            return binding.var, OutputQuant(float(s), z, dtype, lo, hi)
        if cur is not tail or not structural_equal(binding.var.ty, cur.ty):
            return None  # one activation at most, and it must not broadcast
        bounds = _activation_bounds(call, ev)
        if bounds is None or not call.args[0].same_as(cur):
            return None
        lo_hi, cur = bounds, binding.var
    return None
