"""ONNX -> Relax, with every input problem reported as one line *before* any long work.

``check_onnx`` rejects, each with a ``UsageError`` naming the file: a missing file, a file that
is not (or no longer, e.g. truncated) a valid ONNX model, graph inputs with dynamic dimensions
(edgenas compiles static-shape batch-1 libraries; the Relax importer would otherwise produce
symbolic shapes that neither MetaSchedule nor the VM runner here handle), and operators the
Relax ONNX frontend cannot import — checked against the frontend's own converter table,
including sub-graphs, so the user learns all unsupported ops at once instead of the first one
after a slow import.

``import_onnx`` returns the *unfolded* high-level Relax module: no ``zero`` pipeline. That
pipeline legalizes to TIR and folds constants, which would turn ``dequantize(int8 weight)`` into a
float constant before the int8 rewrite (``qdq_rewrite.fold_qdq``) can see it, and it silently
applies whatever tuning database is in scope. Legalize/fuse is ``pipeline.fuse``, after the rewrite.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UsageError

# ONNX QOperator ops have no Relax importer; QDQ graphs of the same model do import.
_QOPERATOR_HINT = "export QDQ (QuantizeLinear/DequantizeLinear) instead of QOperator"
_DEFAULT_DOMAINS = ("", "ai.onnx")
_DIRECT_OPS = {"Constant", "If"}
MIN_OPSET = 7  # the Relax ONNX frontend's converters start at opset 1-7; older graphs use removed op forms  # handled by the importer itself, not its converter map


def _all_nodes(graph):
    """Nodes of ``graph`` and of every sub-graph (If/Loop/Scan bodies)."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _all_nodes(attr.g)
            for g in attr.graphs:
                yield from _all_nodes(g)


def _unsupported_ops(model) -> list[str]:
    from tvm.relax.frontend.onnx import onnx_frontend

    known = onnx_frontend._get_convert_map()  # the importer's own table (same as its check)
    bad = set()
    for node in _all_nodes(model.graph):
        if node.domain not in _DEFAULT_DOMAINS:
            bad.add(f"{node.domain}::{node.op_type}")
        elif node.op_type not in known and node.op_type not in _DIRECT_OPS:
            bad.add(node.op_type)
    return sorted(bad)


def _dim_str(d) -> str:
    if d.HasField("dim_value"):
        return str(d.dim_value)
    return d.dim_param or "?"


def check_onnx(path: str | os.PathLike):
    """Load and validate an ONNX model for compilation; returns the ``onnx.ModelProto``."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such ONNX file")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as e:  # protobuf DecodeError, ValidationError, external-data errors, ...
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise UsageError(f"{path}: not a valid ONNX model (truncated or not ONNX?): {first}") from None
    known = onnx.defs.onnx_opset_version()
    for imp in model.opset_import:
        if imp.domain in _DEFAULT_DOMAINS and not MIN_OPSET <= imp.version <= known:
            raise UsageError(f"{path}: declares ONNX opset {imp.version}; this importer reads opsets {MIN_OPSET}..{known} "
                             "(re-export with a supported opset, e.g. 17)")
    if not model.graph.node or not model.graph.output:
        raise UsageError(f"{path}: the ONNX graph is empty (no nodes or no outputs)")
    initializers = {t.name for t in model.graph.initializer}
    for inp in model.graph.input:
        if inp.name in initializers:
            continue
        ttype = inp.type.tensor_type
        if not ttype.HasField("shape"):
            raise UsageError(f"{path}: input {inp.name!r} has no shape; export with a fixed input shape")
        dims = list(ttype.shape.dim)
        if any(not d.HasField("dim_value") or d.dim_value <= 0 for d in dims):
            shown = "x".join(_dim_str(d) for d in dims)
            raise UsageError(f"{path}: input {inp.name!r} has dynamic shape {shown}; edgenas compiles fixed "
                             f"shapes: re-export with static dimensions (e.g. batch 1)")
    bad = _unsupported_ops(model)
    if bad:
        hint = f" ({_QOPERATOR_HINT})" if any(op.startswith("QLinear") or op == "QGemm" for op in bad) else ""
        raise UsageError(f"{path}: operators the TVM Relax ONNX importer does not support: {', '.join(bad)}{hint}")
    return model


def input_shape(path: str | os.PathLike) -> tuple[int, ...]:
    """The static shape of the model's single graph input (``check_onnx`` guarantees it is static)."""
    model = check_onnx(path)
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise UsageError(f"{path}: edgenas measures single-input models; this one has {len(inputs)} inputs")
    return tuple(d.dim_value for d in inputs[0].type.tensor_type.shape.dim)


# ONNX ops the importer turns into one Relax conv / matmul each (qdq_patterns.CONV_OPS, MATMUL_OPS)
COMPUTE_OP_TYPES = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def compute_nodes(path: str | os.PathLike) -> tuple[tuple[str, str], ...]:
    """``(node name, op type)`` of the main graph's conv / matmul nodes, in graph order: the
    importer keeps no node names, so the int8 rewrite names the op it could not fold by its
    position among these (``qdq_rewrite.fold_qdq``'s ``nodes``)."""
    import onnx

    graph = onnx.load(os.fspath(path), load_external_data=False).graph
    return tuple((n.name, n.op_type) for n in graph.node if n.op_type in COMPUTE_OP_TYPES)


def import_onnx(path: str | os.PathLike):
    """``check_onnx`` + ``relax.frontend.onnx.from_onnx`` with the weights as constants."""
    from tvm.relax.frontend.onnx import from_onnx

    model = check_onnx(path)
    try:
        return from_onnx(model, keep_params_in_input=False)
    except Exception as e:  # an importer limitation the op table cannot show (attribute, dtype)
        first = (str(e).strip().splitlines() or [type(e).__name__])[-1][:200]
        raise UsageError(f"{path}: the TVM Relax ONNX importer failed: {first}") from None

