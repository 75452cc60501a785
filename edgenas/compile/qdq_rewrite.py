"""Fold Q/DQ around conv2d / matmul into integer ops: int8 x int8 -> int32, then one requantize.

TVM 0.27's Relax ONNX importer keeps QDQ models as float simulation: ``dequantize`` feeds a
float32 conv2d or matmul (docs/tvm.md §1), so nothing runs in integer arithmetic and no pass
in ``relax.transform`` changes that. This pass rewrites each such op ("anchor"):

    y = conv2d(dq(x_q, s_x, z_x), dq(w_q, s_w, 0)) [+ b] [-> BatchNorm(k, c)] [* m]
 -> acc = conv2d(pad(x_q, value=z_x), w_q, out_dtype="int32") - z_x * sum(w_q)   (exact)
    y   = float(acc) * (s_x * s_w * k * m) + (b * k + c) * m                     (requantize)

Padding with ``z_x`` keeps border pixels at real 0.0, which is what the float model pads with;
the ``z_x * sum(w)`` term removes the zero point from every other tap. Bias adds, a
BatchNormalization left after a quantized conv (brevitas exports keep it) and a constant
multiply (Gemm alpha) are absorbed into the requantize when the anchor's result has no other
user; the ReLU / Clip / quantize after it stay as ops (unless they fold, below), and FuseOps fuses them
with the integer op into one kernel (``fused_conv2d_subtract_cast_multiply_add_relu_quantize``).
Weight and bias chains (brevitas ``Clip`` on int8 initializers, a Gemm weight's transpose,
``sum(w)``, the folded bias) become constants: evaluated by ``qdq_consts`` where it can, by
FoldConstant otherwise, then DeadCodeElimination drops the float chains. Anything else stays
float with its activation Q/DQ (FoldConstant does turn its ``dequantize(int8 weight)`` into a
float constant) and is listed in :attr:`FoldReport.fallbacks` with the reason.

When the result only feeds ``[ReLU | Clip] -> quantize`` (the usual QDQ layer boundary), that
tail folds in too (``qdq_absorb.OutputQuant``): ``q = clip(round(acc * s_x s_w k m / s_y + (b'/s_y
+ z_y)), lo, hi)`` with the activation as the integer bounds, one requantize straight to the next
layer's int8, no float tensor in between.

On x86 targets with an integer dot-product kernel (``fold_qdq(mod, dot=...)``):

* convolutions (groups 1) and 2-D matmuls with a constant weight accumulate through a
  packed-weight GEMM (``packed_dot``: AVX2 ``pmaddwd``, or ``pmaddubsw`` for a weight whose
  pair sums fit int16, AVX-512 VNNI ``vpdpbusd``), convs
  channels-last with the taps in the GEMM's reduction;
* depthwise convs run ``depthwise``'s kernel: uint8 in memory, ``vpmaddwd`` on zero-extended bytes,
  channels-last.

Each conv kernel is wrapped in transposes to NHWC and back; ``layout.sink_transposes`` then
removes those between kernels, so the integer graph is channels-last from the input's quantize
to the classifier (docs/int8_kernels.md).

Activations quantized per channel fold where that is exact (``qdq_patterns``): a depthwise
conv takes each channel's scale into its requantize; another conv or matmul whose scales are
integer multiples of the smallest gets those multiples in its weight (:func:`_scale_weight`: the
weight must be a constant and the products must fit int8); otherwise it stays float.

Residual adds and average pooling are not rewritten: FuseOps already puts ``dequantize -> add
-> quantize`` into the producer's kernel, which reads and writes integers. (On VNNI targets a
whole MobileNetV2 block with its residual then becomes one kernel: ``fused_block``.) An integer
``sum(astype(x_q, int32))`` for the pool was tried and dropped: FuseOps fuses the cast into the
producer, which then writes int32 instead of float32, so nothing is saved (the same happened to
int16 depthwise operands cast in the graph; ``depthwise`` casts inside its own kernel instead).
"""

from __future__ import annotations

import dataclasses
import functools
from collections import Counter

import numpy as np
import tvm
from tvm import relax
from tvm.ir import Op
from tvm.ir.expr import GenericConst
from tvm.relax.expr_functor import PyExprMutator, PyExprVisitor, mutator, visitor

from . import depthwise, layout, packed_dot
from .qdq_absorb import OutputQuant, Requant, absorb_output_quantize, absorb_tail, collect_users
from .qdq_consts import ConstEval
from .qdq_patterns import CONV_OPS, MATMUL_OPS, Anchor, match_anchor

__all__ = ["FoldQDQ", "FoldReport", "float_compute_ops", "fold_qdq"]

_COMPUTE_OPS = CONV_OPS + MATMUL_OPS


@dataclasses.dataclass(frozen=True)
class FoldReport:
    """What :func:`fold_qdq` did: integer ops by kind and one line per op left in float."""

    int8_ops: dict[str, int]
    fallbacks: tuple[str, ...]
    packed: int = 0          # of the integer ops, those running on the packed dot-product kernel
    narrow: int = 0          # ... of which on its narrow form (AVX2 pmaddubsw: the weight fits, packed_dot.fits)
    depthwise: int = 0       # ... and those running on the channels-last depthwise kernel
    requantized: int = 0     # ... and those whose activation + output quantize folded in (OutputQuant)
    fused_blocks: int = 0    # inverted-residual blocks made one kernel afterwards (fused_block.fuse_blocks):
                             # each takes 2 packed convs and 1 depthwise from the counts above

    def kernel_classes(self) -> dict[str, int]:
        """Integer ops by the kernel that runs them (``edgenas compile`` prints it): the rest of
        the integer ops (dilated or grouped convs, matmuls without a constant weight) run TVM's own
        int8 conv2d / matmul."""
        n, f = sum(self.int8_ops.values()), self.fused_blocks
        classes = {"fused inverted-residual block (expand, depthwise, project + residual)": f,
                   "packed GEMM (conv, matmul)": self.packed - self.narrow - 2 * f,
                   "packed GEMM, pmaddubsw (weight pairs fit int16)": self.narrow, "depthwise": self.depthwise - f,
                   "TVM int8 conv/matmul": n - self.packed - self.depthwise}
        return {k: v for k, v in classes.items() if v}


def _is_float(expr) -> bool:
    return str(getattr(expr.ty, "dtype", "")).startswith(("float", "bfloat"))


def _calls(func: relax.Function, ops):
    """Yield (binding var, call) for every binding of ``func`` that calls one of ``ops``."""
    for block in func.body.blocks:
        for binding in block.bindings:
            value = binding.value
            if isinstance(value, relax.Call) and isinstance(value.op, Op) and value.op.name in ops:
                yield binding.var, value


def _describe(var, call, node: tuple[str, str] | None) -> str:
    """The op a fallback row names: its ONNX node (``name`` (op type)) when known, else the
    Relax variable; with the Relax op and its output shape."""
    dims = _static_shape(var)
    shape = "x".join(str(s) for s in (dims if dims is not None else getattr(var.ty, "shape", None) or ()))
    op = call.op.name.split(".")[-1]
    if node is None:
        return f"{op} {var.name} [{shape}]"
    name, op_type = node
    return f"{op_type} {name or '(unnamed)'!r} ({op} [{shape}])"


def _scale_weight(a: Anchor, ev: ConstEval) -> Anchor | str:
    """The anchor with its per-channel activation scale ratios multiplied into the weight
    (``w_q * x_factors``, see ``qdq_patterns.Anchor``), or why that cannot be done exactly."""
    value = ev(a.w_q)
    if value is None:
        return ("activation scales are per channel and the weight is not a constant; an integer weight cannot "
                "absorb them")
    scaled = value.astype("int64") * a.x_factors
    if scaled.min() < -128 or scaled.max() > 127:
        return (f"activation scales per channel differ by up to {int(a.x_factors.max())}x; the weight times those "
                f"ratios ({int(scaled.min())}..{int(scaled.max())}) does not fit int8")
    return dataclasses.replace(a, w_q=relax.const(scaled.astype("int8")), x_factors=None)


def _weight(a: Anchor, ev: ConstEval):
    """The int8 weight in the integer op's layout and its per-output-channel sum (int32).

    With a constant weight both are computed here, so a Gemm's transpose and ``sum(w)`` become
    constants without a compile; otherwise they stay Relax ops for FoldConstant (or run time).
    """
    value = ev(a.w_q)
    if value is not None:
        value = np.ascontiguousarray(value.T if a.transposed else value)
        axes = (1, 2, 3) if a.kind == "conv2d" else (0,)
        sum_w = value.astype("int32").sum(axis=axes, dtype="int32")
        if a.kind == "conv2d":
            sum_w = sum_w.reshape(1, a.channels, 1, 1)
        return relax.const(value), relax.const(sum_w)
    w = relax.op.permute_dims(a.w_q, [1, 0]) if a.transposed else a.w_q
    sum_w = relax.op.sum(relax.op.astype(w, "int32"), axis=[1, 2, 3] if a.kind == "conv2d" else [0])
    if a.kind == "conv2d":
        sum_w = relax.op.reshape(sum_w, (1, a.channels, 1, 1))
    return w, sum_w


def _static_shape(expr) -> list[int] | None:
    try:
        return [int(s) for s in expr.ty.shape]
    except (AttributeError, TypeError, ValueError):
        return None


def _packed_accumulate(a: Anchor, ev: ConstEval, dot: packed_dot.DotKernel, bb) -> tuple[relax.Expr, int, bool] | None:
    """``(int32 accumulator without the zero-point term, effective zero point, channels-last)``
    through the packed GEMM (see ``packed_dot``), or None when the op is not a conv (groups 1,
    no dilation) / 2-D matmul with a constant weight and static shapes. A conv takes
    ``conv_dot_func`` channels-last (the taps as reduction axes, its padding the zero point):
    its input is transposed to NHWC and its accumulator is NHWC (``layout.sink_transposes``
    removes the transposes between kernels). Int8 activations enter the GEMM as ``x + 128``
    (uint8), so their zero point moves by 128 too."""
    value, shape = ev(a.w_q), _static_shape(a.x_q)
    if value is None or shape is None:
        return None
    dtype, zero = str(a.x_q.ty.dtype), packed_dot.gemm_zero(str(a.x_q.ty.dtype), a.x_zero)
    if a.kind == "conv2d":
        at = a.call.attrs
        if (len(shape) != 4 or int(at.groups) != 1 or at.data_layout != "NCHW" or value.shape[1] != shape[1]
                or any(int(v) != 1 for v in at.dilation)):
            return None
        n, c, h, w = shape
        dot = packed_dot.fitting(kernel := dot, value)
        func, out_shape = packed_dot.conv_dot_func(
            (n, h, w, c), dtype, value.shape[0], dot, value.shape[2:], tuple(int(v) for v in at.strides),
            tuple(int(p) for p in at.padding), a.x_zero)
        acc = relax.call_tir(bb.add_func(func, "packed_dot_narrow" if dot is not kernel else "packed_dot"),
                             [layout.to_nhwc(a.x_q), relax.const(packed_dot.pack_conv_weight(value, dot))],
                             relax.TensorType(out_shape, "int32"))
        return acc, zero, True
    if len(shape) != 2:
        return None
    weight = value if a.transposed else value.T  # (out, in)
    dot = packed_dot.fitting(kernel := dot, weight)
    gv = bb.add_func(packed_dot.packed_dot_func(tuple(shape), dtype, weight.shape[0], dot),
                     "packed_dot_narrow" if dot is not kernel else "packed_dot")
    acc = relax.call_tir(gv, [a.x_q, relax.const(packed_dot.pack_weight(weight, dot))],
                         relax.TensorType((shape[0], weight.shape[0]), "int32"))
    return acc, zero, False


def _depthwise_accumulate(a: Anchor, ev: ConstEval, bb) -> relax.Expr | None:
    """The int32 NHWC accumulator of a depthwise conv through ``depthwise`` (zero point removed
    by its bias), or None when the op is not one it covers or has no constant weight."""
    value, shape = ev(a.w_q), _static_shape(a.x_q)
    if a.kind != "conv2d" or value is None or not depthwise.applies(a.call.attrs, shape, value.shape):
        return None
    at = a.call.attrs
    n, c, h, w = shape
    func, out_shape = depthwise.depthwise_func((n, h, w, c), str(a.x_q.ty.dtype), value.shape[2:],
                                               tuple(int(s) for s in at.strides), tuple(int(p) for p in at.padding),
                                               a.x_zero)
    gv = bb.add_func(func, "depthwise_conv2d")
    return relax.call_tir(gv, [layout.to_nhwc(a.x_q), relax.const(depthwise.weight(value)),
                               relax.const(depthwise.bias(value, str(a.x_q.ty.dtype), a.x_zero))],
                          relax.TensorType(out_shape, "int32"))


def _int_accumulate(a: Anchor, ev: ConstEval, dot: packed_dot.DotKernel | None = None,
                    bb=None) -> tuple[relax.Expr, bool]:
    """The integer op with int32 accumulation, zero point of the activation removed, and whether
    that accumulator is channels-last (NHWC: edgenas' x86 conv kernels) rather than NCHW."""
    x, z = a.x_q, a.x_zero
    if dot is not None and (acc := _depthwise_accumulate(a, ev, bb)) is not None:
        return acc, True
    w, sum_w = _weight(a, ev)
    packed = _packed_accumulate(a, ev, dot, bb) if dot is not None else None
    nhwc = False
    if packed is not None:
        acc, z, nhwc = packed
    elif a.kind == "conv2d":
        attrs = a.call.attrs
        pad = [int(p) for p in attrs.padding]
        if z != 0 and any(pad):  # padded taps must be z_x (real 0.0), not integer 0
            x = relax.op.nn.pad(x, [0, 0, 0, 0, pad[0], pad[2], pad[1], pad[3]], pad_value=float(z))
            pad = [0, 0, 0, 0]
        acc = relax.op.nn.conv2d(x, w, strides=attrs.strides, padding=pad, dilation=attrs.dilation,
                                 groups=attrs.groups, out_dtype="int32")
    else:
        acc = relax.op.matmul(x, w, out_dtype="int32")
    if z == 0:
        return acc, nhwc
    if isinstance(sum_w, GenericConst):
        correction = sum_w.value.numpy() * np.int32(z)
        return relax.op.subtract(acc, relax.const(_channels_last(correction) if nhwc else correction)), nhwc
    return relax.op.subtract(acc, relax.op.multiply(sum_w, relax.const(z, "int32"))), nhwc


def _channels_last(v: np.ndarray) -> np.ndarray:
    """A per-channel (1, C, 1, 1) constant as it broadcasts against an NHWC tensor (scalars as they are)."""
    return np.moveaxis(v, 1, -1) if v.ndim == 4 else v


def _requantize(a: Anchor, r: Requant, ev: ConstEval, dot, bb, output: OutputQuant | None = None) -> relax.Expr:
    acc, nhwc = _int_accumulate(a, ev, dot, bb)
    if output is not None:  # straight to the next layer's integers (see OutputQuant)
        scale = np.asarray(r.scale / output.scale, dtype="float32")
        bias = np.asarray((0.0 if r.bias is None else r.bias) / output.scale + output.zero, dtype="float32")
        if nhwc:
            scale, bias = _channels_last(scale), _channels_last(bias)
        out = relax.op.add(relax.op.multiply(relax.op.astype(acc, "float32"), relax.const(scale)), relax.const(bias))
        q = relax.op.astype(relax.op.clip(relax.op.round(out), output.lo, output.hi), output.dtype)
        return layout.to_nchw(q) if nhwc else q
    acc = relax.op.astype(layout.to_nchw(acc) if nhwc else acc, "float32")
    out = relax.op.multiply(acc, relax.const(r.scale.astype("float32")))
    bias = r.bias_expr()
    return out if bias is None else relax.op.add(out, bias)


@mutator
class _Emitter(PyExprMutator):
    """Replace the binding at the end of each absorbed chain by the integer expression.

    The bindings it leaves behind (the float op, absorbed adds, weight dequantize) lose their
    last user and are removed by DeadCodeElimination afterwards.
    """

    def __init__(self, mod, plans):
        super().__init__(mod)
        self.plans = plans  # var -> function building its new value

    def visit_var_binding_(self, binding):
        plan = self.plans.get(binding.var)
        if plan is None:
            return super().visit_var_binding_(binding)
        value = self.visit_expr(plan(self.builder_))
        if self.builder_.current_block_is_dataflow() and not isinstance(binding.var, relax.DataflowVar):
            new_var = self.builder_.emit_output(value, binding.var.name)  # visible after the block
        else:
            new_var = self.builder_.emit(value, binding.var.name)
        self.set_var_remap(binding.var, new_var)


def _fold_function(mod, func: relax.Function, counts: Counter, fallbacks: list[str], dot,
                   nodes=None) -> tuple[relax.Function, dict]:
    """The rewritten function and the PrimFuncs it added (the packed GEMMs), by GlobalVar.
    ``nodes``: the ONNX node of each conv / matmul call, in order (or None)."""
    var2val, users = relax.analysis.get_var2val(func), collect_users(func)
    ev, plans = ConstEval(var2val, mod), {}
    ops = list(_calls(func, _COMPUTE_OPS))
    nodes = nodes if nodes is not None and len(nodes) == len(ops) else [None] * len(ops)
    for (var, call), node in zip(ops, nodes):
        if not any(_is_float(arg) for arg in call.args[:2]):
            continue  # already integer
        anchor = match_anchor(call, var2val)
        if isinstance(anchor, Anchor) and anchor.x_factors is not None:
            anchor = _scale_weight(anchor, ev)
        if isinstance(anchor, str):
            fallbacks.append(f"{_describe(var, call, node)}: {anchor}")
            continue
        tail, requant = absorb_tail(var, anchor, ev, users)
        folded = absorb_output_quantize(tail, ev, users) if not isinstance(requant.bias, relax.Expr) else None
        if folded is not None:
            tail, output = folded
            plans[tail] = functools.partial(_requantize, anchor, requant, ev, dot, output=output)
            counts["requantized"] += 1
        else:
            plans[tail] = functools.partial(_requantize, anchor, requant, ev, dot)
        counts[anchor.kind] += 1
    if not plans:
        return func, {}
    emitter = _Emitter(mod, plans)
    new = emitter.visit_expr(func)
    known = {gv.name_hint for gv in mod.get_global_vars()}
    added = {gv: f for gv, f in emitter.builder_.get().functions_items() if gv.name_hint not in known}
    kernels = Counter(bd.value.args[0].name_hint for b in new.body.blocks for bd in b.bindings
                      if isinstance(bd.value, relax.Call) and bd.value.op == Op.get("relax.call_tir"))
    for name, n in kernels.items():
        counts["packed" if name.startswith("packed_dot") else "depthwise_kernel" if name.startswith("depthwise") else ""] += n
        counts["narrow" if name.startswith("packed_dot_narrow") else ""] += n
    counts.pop("", None)
    return new, added


def fold_qdq(mod: tvm.IRModule, dot: packed_dot.DotKernel | None = None,
             nodes: tuple[tuple[str, str], ...] | None = None) -> tuple[tvm.IRModule, FoldReport]:
    """Rewrite every foldable dequantized conv2d/matmul of ``mod`` into an integer op.

    ``dot`` (``packed_dot.kernel_for(target)``) sends convs and matmuls through the packed
    dot-product GEMM of that x86 target and its channels-last kernels; None keeps every op a
    plain Relax conv2d/matmul. ``nodes`` (``frontend.compute_nodes``) names the ONNX node of
    each conv / matmul of ``main`` in order, so a fallback row says which node of the user's
    model stayed float; when their number does not match, rows name the Relax variable.

    Returns the new module (the input is not modified) and a :class:`FoldReport`. Dead code is
    removed first so that single-use checks see only real users (the importer binds unused
    BatchNorm mean/var outputs), and FoldConstant runs only after the rewrite: run before,
    it would fold ``dequantize(int8 weight)`` into a float weight and hide the pattern.
    """
    mod = relax.transform.DeadCodeElimination()(mod)
    counts, fallbacks = Counter(), []
    out = mod.clone()
    for gvar, func in mod.functions_items():
        if isinstance(func, relax.Function):
            out[gvar], added = _fold_function(mod, func, counts, fallbacks, dot,
                                              nodes if gvar.name_hint == "main" else None)
            for gv, f in added.items():
                out[gv] = f
    dce = relax.transform.DeadCodeElimination()
    if dot is not None:  # the x86 kernels are channels-last: drop the transposes between them
        out = layout.sink_transposes(dce(out))
    out = dce(relax.transform.FoldConstant()(dce(out)))  # DCE first: no time spent on dead chains
    packed, narrow, dw, requantized = (counts.pop(k, 0) for k in ("packed", "narrow", "depthwise_kernel", "requantized"))
    return out, FoldReport(dict(sorted(counts.items())), tuple(fallbacks), packed, narrow, dw, requantized)


@tvm.transform.module_pass(opt_level=0, name="FoldQDQ")
def FoldQDQ(mod: tvm.IRModule, _ctx) -> tvm.IRModule:  # noqa: N802 - a Pass, named like TVM's
    """:func:`fold_qdq` as a pass for ``tvm.transform.Sequential`` pipelines (report dropped)."""
    return fold_qdq(mod)[0]


@visitor
class _FloatComputeFinder(PyExprVisitor):
    def __init__(self):
        self.found: list[str] = []
        self.where = ""

    def visit_var_binding_(self, binding):
        value = binding.value
        if isinstance(value, relax.Call) and isinstance(value.op, Op) and value.op.name in _COMPUTE_OPS:
            dtypes = [str(a.ty.dtype) for a in value.args[:2]]
            if any(d.startswith(("float", "bfloat")) for d in dtypes):
                self.found.append(f"{self.where}/{binding.var.name}: {value.op.name}({', '.join(dtypes)})")
        self.visit_expr(value)


def float_compute_ops(mod: tvm.IRModule) -> list[str]:
    """List the conv / matmul ops of ``mod``'s Relax functions that still take float inputs.

    The acceptance check for "no float conv2d/matmul left": empty after :func:`fold_qdq` when
    every such op was foldable. Lines look like ``main/lv17: relax.nn.conv2d(float32, float32)``.
    Give it the high-level module (``fold_qdq``'s output): after LegalizeOps there are no Relax
    conv/matmul calls left, and the list would be empty for any model.
    """
    finder = _FloatComputeFinder()
    for gvar, func in mod.functions_items():
        if isinstance(func, relax.Function):
            finder.where = gvar.name_hint
            finder.visit_expr(func)
    return finder.found
