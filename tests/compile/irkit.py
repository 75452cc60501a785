"""Relax IR building blocks shared by the compile tests (before/expected modules)."""

from __future__ import annotations

import numpy as np
from tvm import relax


def c(value, dtype=None):
    return relax.const(np.asarray(value, dtype=dtype))


def module(x_shape, body):
    """A one-function module: ``body(bb, x)`` emits the dataflow bindings, returns the output."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(x_shape, "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(body(bb, x))
        bb.emit_func_output(out)
    return bb.get()
