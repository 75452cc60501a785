"""One channels-last layout for the whole integer graph: transposes only at its borders.

Why: onnxruntime runs its int8 convs in NHWC with no transposes between them
(docs/int8_kernels.md). edgenas' x86 integer kernels (``packed_dot.conv_dot_func``,
``depthwise.depthwise_func``) are channels-last too, and the rewrite (``qdq_rewrite``) wraps each
one in ``permute_dims`` to NHWC before and back to NCHW after, so that every op it did not
rewrite still sees the ONNX model's NCHW. This pass removes the pairs that meet: a transpose to
NHWC of a value that is itself a transpose to NCHW is the NHWC value, and a per-tensor
elementwise op between two kernels (the residual add's ``dequantize -> add -> quantize``), a
window pool (max or average, with ``layout="NHWC"``) or a global average pool runs on the NHWC
values instead. What is left is one transpose after the
input's quantize and one before the first op that needs NCHW (the classifier's flatten, a float
fallback); FuseOps fuses each into its neighbour's kernel.
"""

from __future__ import annotations

from tvm import relax
from tvm.ir import Op
from tvm.relax.expr_functor import PyExprMutator, mutator

NHWC = (0, 2, 3, 1)  # permute_dims axes: NCHW -> NHWC
NCHW = (0, 3, 1, 2)  # NHWC -> NCHW

# ops that act on each element alone, whose other tensor operands may be scalars; per-tensor
# quantize / dequantize have an ``axis`` that only names the (broadcast) scale's dimension
_ELEMENTWISE = {"relax.add", "relax.subtract", "relax.multiply", "relax.divide", "relax.maximum", "relax.minimum",
                "relax.clip", "relax.round", "relax.astype", "relax.nn.relu", "relax.quantize", "relax.dequantize"}

# window pools: the same op in NHWC (channels as the vector lanes). Left in NCHW, ResNet-18's
# max pool after the stem cost a 141 µs transpose and a 168 µs pool at 96x96 (docs/int8_kernels.md)
_POOLS = {"relax.nn.max_pool2d": relax.op.nn.max_pool2d, "relax.nn.avg_pool2d": relax.op.nn.avg_pool2d}


def to_nhwc(x: relax.Expr) -> relax.Expr:
    return relax.op.permute_dims(x, list(NHWC))


def to_nchw(x: relax.Expr) -> relax.Expr:
    return relax.op.permute_dims(x, list(NCHW))


def _axes(call) -> tuple[int, ...] | None:
    if call.op != Op.get("relax.permute_dims") or call.attrs.axes is None:
        return None
    return tuple(int(a) for a in call.attrs.axes)


def _scalar_like(expr) -> bool:
    shape = getattr(expr.ty, "shape", None)
    try:
        return shape is not None and all(int(d) == 1 for d in shape)
    except (TypeError, ValueError):
        return False


@mutator
class _Sink(PyExprMutator):
    """Walks each function's bindings in order; ``nhwc`` maps a 4-d NCHW value to an earlier
    value holding the same tensor in NHWC."""

    def __init__(self, mod):
        super().__init__(mod)
        self.nhwc: dict = {}

    def _emit(self, binding, value):
        if self.builder_.current_block_is_dataflow() and not isinstance(binding.var, relax.DataflowVar):
            new = self.builder_.emit_output(value, binding.var.name)
        else:
            new = self.builder_.emit(value, binding.var.name)
        self.set_var_remap(binding.var, new)
        return new

    def visit_var_binding_(self, binding):
        value = self.visit_expr(binding.value)
        if not isinstance(value, relax.Call) or not isinstance(value.op, Op):
            return self._emit(binding, value)
        axes = _axes(value)
        if axes == NHWC and value.args[0] in self.nhwc and isinstance(binding.var, relax.DataflowVar):
            self.set_var_remap(binding.var, self.nhwc[value.args[0]])  # the transposes cancel
            return None
        inner = self._on_nhwc(value)
        if inner is None:
            new = self._emit(binding, value)
            if axes == NCHW:
                self.nhwc[new] = value.args[0]
            elif axes == NHWC:  # an NCHW value with an NHWC copy (the input's quantize): reuse it
                self.nhwc.setdefault(value.args[0], new)
            return new
        inner_var = self.builder_.emit(inner, binding.var.name + "_nhwc")
        new = self._emit(binding, to_nchw(inner_var))
        self.nhwc[new] = inner_var
        return new

    def _on_nhwc(self, call):
        """The same op on the NHWC values, or None where it cannot move."""
        name = call.op.name
        tensors = [a for a in call.args if isinstance(getattr(a, "ty", None), relax.TensorType)]
        if name == "relax.mean":
            if (call.args[0] not in self.nhwc or not call.attrs.keepdims or call.attrs.axis is None
                    or sorted(int(a) for a in call.attrs.axis) != [2, 3]):
                return None
            return relax.op.mean(self.nhwc[call.args[0]], axis=[1, 2], keepdims=True)
        if name in _POOLS:
            a = call.attrs
            if call.args[0] not in self.nhwc or a.layout != "NCHW" or a.out_layout != "NCHW":
                return None
            return _POOLS[name](self.nhwc[call.args[0]], a.pool_size, a.strides, a.padding, a.dilation, a.ceil_mode,
                                a.count_include_pad, layout="NHWC", out_layout="NHWC")
        if name not in _ELEMENTWISE or not any(a in self.nhwc for a in tensors):
            return None
        if not all(a in self.nhwc or _scalar_like(a) for a in tensors):
            return None
        if name in ("relax.quantize", "relax.dequantize"):
            x, scale, zero = call.args
            if not (_scalar_like(scale) and _scalar_like(zero)):
                return None
            axis = NCHW[int(call.attrs.axis) % 4]  # the same dimension, NHWC-numbered
            op = relax.op.quantize if name == "relax.quantize" else relax.op.dequantize
            return op(self.nhwc[x], scale, zero, axis=axis, out_dtype=str(call.attrs.out_dtype))
        args = [self.nhwc.get(a, a) if a in tensors else a for a in call.args]
        return relax.Call(call.op, args, call.attrs, call.ty_args)


def sink_transposes(mod):
    """Return ``mod`` with the NCHW <-> NHWC transposes between integer kernels removed (see the
    module docstring); dead ones are left for DeadCodeElimination."""
    out = mod.clone()
    for gvar, func in mod.functions_items():
        if isinstance(func, relax.Function):
            out[gvar] = _Sink(mod).visit_expr(func)
    return out
