"""Relax IR building blocks shared by the compile tests (before/expected modules), and the CPU
that runs x86-avx-vnni's kernel on this host."""

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


NO_YMM_VNNI = "this CPU has neither AVX-VNNI nor AVX-512 VNNI + VL to run vpdpbusd on ymm (compiling it needs none)"


def avxvnni_mcpu() -> str | None:
    """The ``mcpu`` to run x86-avx-vnni's ymm ``vpdpbusd`` kernel on this host: the target's own
    (alderlake: the VEX encoding) on a CPU with AVX-VNNI, else cascadelake, whose AVX-512 VNNI + VL
    run the same LLVM intrinsic on ymm (EVEX-encoded); None where neither runs it."""
    from edgenas.target import get_target, host_cpu_flags

    flags = host_cpu_flags()
    if "avx_vnni" in flags:
        return get_target("x86-avx-vnni").tvm_target["mcpu"]
    return "cascadelake" if {"avx512f", "avx512bw", "avx512vl", "avx512_vnni"} <= flags else None
