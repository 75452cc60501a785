"""Evaluate the small constant expressions around a quantized op with numpy, without compiling.

The rewrite needs the values of weight and bias chains (``dequantize(int32 bias)``, its
``reshape``, a Gemm weight's transpose, ``sum(w)`` for the zero-point term). Relax's
FoldConstant computes such values by legalizing and compiling every op separately, about 50 ms
each: 7.6 s for the 52 convs of an ORT-quantized MobileNetV2-0.35, more than compiling the
network. The Relax ops that occur in these chains are few and have exact numpy equivalents, so
they are evaluated here. The importer emits Clip (brevitas puts one on every int8 weight) as
``call_tir`` of a TOPI PrimFunc; those PrimFuncs are compiled together at LLVM opt-level 0,
once per function, and run: folding a brevitas MobileNetV2-0.35 takes 0.95 s instead of 8.4 s
with FoldConstant. Anything else returns ``None`` and is left to FoldConstant.

The arithmetic follows TVM's own lowering where results could differ: ``dequantize`` is
``float32(int32(q) - zp) * float32(scale)`` (``legalize_ops/qdq.py``), integer sums stay in
the input's dtype, and a result whose dtype differs from the one Relax inferred is rejected.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.ir import Op
from tvm.ir.expr import GenericConst


def _axes(attr, ndim):
    return None if attr is None else tuple(int(a) % ndim for a in attr)


def _dequantize(call, q, scale, zero):
    axis = int(call.attrs.axis) % max(q.ndim, 1)

    def along_axis(p):
        if p.size == 1:
            return p.reshape(())
        shape = [1] * q.ndim
        shape[axis] = p.size
        return p.reshape(shape)

    compute = "float32" if q.dtype.kind == "f" else "int32"
    diff = q.astype(compute) - along_axis(zero).astype(compute)
    return diff.astype("float32") * along_axis(scale).astype("float32")


def _binary(fn):
    def run(call, a, b):
        return fn(a, b) if a.dtype == b.dtype else None
    return run


def _astype(call, x):
    dtype = np.dtype(str(call.attrs.dtype))
    if x.dtype.kind == "f" and dtype.kind != "f":
        return None  # float -> int rounding/saturation is target-defined; leave it to TVM
    return x.astype(dtype)


def _reshape(call, x):
    if not isinstance(call.args[1], relax.ShapeExpr):
        return None
    try:
        return x.reshape([int(d) for d in call.args[1].values])
    except TypeError:  # symbolic dimension
        return None


def _sum(call, x):
    if x.dtype.kind == "f":
        return None  # numpy sums pairwise, TVM in order: leave float sums to TVM
    return np.sum(x, axis=_axes(call.attrs.axis, x.ndim), dtype=x.dtype, keepdims=bool(call.attrs.keepdims))


_OPS = {
    "relax.dequantize": _dequantize,
    "relax.reshape": _reshape,
    "relax.permute_dims": lambda call, x: np.transpose(x, _axes(call.attrs.axes, x.ndim)),
    "relax.astype": _astype,
    "relax.add": _binary(np.add),
    "relax.subtract": _binary(np.subtract),
    "relax.multiply": _binary(np.multiply),
    "relax.negative": lambda call, x: np.negative(x),
    "relax.clip": lambda call, x: np.clip(x, call.args[1].value, call.args[2].value).astype(x.dtype),
    "relax.sum": _sum,
}
_TENSOR_ARGS = {"relax.reshape": 1, "relax.clip": 1}  # the other operands are shapes/bounds


class Static:
    """Whether an expression depends only on constants (through earlier bindings), memoised."""

    def __init__(self, var2val):
        self.var2val, self.memo = var2val, {}

    def __call__(self, expr) -> bool:
        return all(self._var(v) for v in relax.analysis.free_vars(expr))

    def _var(self, var) -> bool:
        if var not in self.memo:
            self.memo[var] = False  # guards against cycles; params are never static
            value = self.var2val.get(var)
            self.memo[var] = value is not None and self(value)
        return self.memo[var]


class ConstEval:
    """``ConstEval(var2val, mod)(expr)``: the value of ``expr`` as a numpy array, or ``None`` when
    it is not a constant or uses an op this evaluator does not model. Results are memoised."""

    def __init__(self, var2val, mod: tvm.IRModule):
        self.var2val, self.mod, self.memo = var2val, mod, {}
        self.static = Static(var2val)
        self._lib, self._funcs = None, {}

    def __call__(self, expr) -> np.ndarray | None:
        if isinstance(expr, relax.Var):
            if expr not in self.memo:
                self.memo[expr] = None  # params, and cycles, are not constants
                value = self.var2val.get(expr)
                self.memo[expr] = None if value is None else self(value)
            return self.memo[expr]
        if isinstance(expr, GenericConst):
            return expr.value.numpy()
        if not (isinstance(expr, relax.Call) and isinstance(expr.op, Op)):
            return None
        if expr.op.name == "relax.call_tir":
            return self._call_tir(expr)
        if expr.op.name not in _OPS:
            return None
        n_tensors = _TENSOR_ARGS.get(expr.op.name, len(expr.args))
        args = [self(a) for a in expr.args[:n_tensors]]
        if any(a is None for a in args):
            return None
        out = _OPS[expr.op.name](expr, *args)
        if out is None or str(out.dtype) != str(expr.ty.dtype):
            return None
        return np.asarray(out)

    def _call_tir(self, call) -> np.ndarray | None:
        if len(call.args) != 2 or not isinstance(call.args[1], relax.Tuple):
            return None  # symbolic shape arguments: leave it to FoldConstant
        args = [self(a) for a in call.args[1].fields]
        if any(a is None for a in args):
            return None
        out = tvm.runtime.empty([int(d) for d in call.ty.shape], str(call.ty.dtype))
        self._function(call.args[0].name_hint)(*[tvm.runtime.tensor(a) for a in args], out)
        return out.numpy()

    def _function(self, name: str):
        """A compiled PrimFunc; the library holds every PrimFunc that a static ``call_tir`` of
        the function calls, built at the first request."""
        if name not in self._funcs:
            self._funcs[name] = self._library()[name]  # a lookup costs ~7 ms (JIT): keep it
        return self._funcs[name]

    def _library(self):
        if self._lib is None:
            funcs = {}
            for value in self.var2val.values():
                if (isinstance(value, relax.Call) and isinstance(value.op, Op)
                        and value.op.name == "relax.call_tir" and self.static(value)):
                    gvar = value.args[0]
                    funcs[gvar.name_hint] = self.mod[gvar].with_attr("global_symbol", gvar.name_hint)
            self._lib = tvm.compile(tvm.IRModule(funcs), target=tvm.target.Target({"kind": "llvm", "opt-level": 0}))
        return self._lib
