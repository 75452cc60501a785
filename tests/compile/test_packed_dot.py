"""The packed dot-product kernels (x86 AVX2 pmaddwd, AVX-512 VNNI vpdpbusd): exact numerics of
1x1 convs and matmuls against the float simulation, and MetaSchedule really tensorizing them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tvm
from tvm import relax

from edgenas.compile import packed_dot
from edgenas.compile.qdq_rewrite import fold_qdq, float_compute_ops

R = np.random.RandomState(3)
HAS_VNNI = "avx512_vnni" in Path("/proc/cpuinfo").read_text()
MCPU = {"avx2": "haswell", "vnni": "cascadelake"}


def c(value, dtype=None):
    return relax.const(np.asarray(value, dtype=dtype))


def _module(x_shape, body):
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(x_shape, "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(body(bb, x))
        bb.emit_func_output(out)
    return bb.get()


def _quant(bb, x, zero, xdtype):
    q = bb.emit(relax.op.quantize(x, c(0.05, "float32"), c(zero, xdtype), out_dtype=xdtype))
    return bb.emit(relax.op.dequantize(q, c(0.05, "float32"), c(zero, xdtype)))


def pointwise(cin, cout, zero, xdtype):
    w = R.randint(-127, 128, (cout, cin, 1, 1)).astype("int8")
    sw = R.uniform(0.001, 0.01, cout).astype("float32")

    def body(bb, x):
        wd = bb.emit(relax.op.dequantize(c(w), c(sw), c(np.zeros(cout), "int8"), axis=0))
        y = bb.emit(relax.op.nn.conv2d(_quant(bb, x, zero, xdtype), wd))
        return relax.op.nn.relu(bb.emit(relax.op.add(y, c(R.uniform(-1, 1, (1, cout, 1, 1)), "float32"))))
    return (1, cin, 5, 7), body


def gemm(cin, cout, zero, xdtype):
    w = R.randint(-127, 128, (cout, cin)).astype("int8")  # Gemm(transB=1): (N, K)

    def body(bb, x):
        wd = bb.emit(relax.op.dequantize(c(w), c(R.uniform(0.001, 0.01, cout), "float32"), c(np.zeros(cout), "int8"), axis=0))
        return relax.op.matmul(_quant(bb, x, zero, xdtype), bb.emit(relax.op.permute_dims(wd, [1, 0])))
    return (3, cin), body


def _run(mod, x, mcpu):
    tgt = tvm.target.Target({"kind": "llvm", "mcpu": mcpu, "num-cores": 2})
    return relax.VirtualMachine(tvm.compile(mod, target=tgt), tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()


CASES = {
    "pw-uint8-zp": pointwise(16, 24, 7, "uint8"),
    "pw-int8-padded": pointwise(6, 20, -3, "int8"),   # channels padded to K and L, int8 shifted to uint8
    "gemm-uint8": gemm(32, 10, 128, "uint8"),
    "gemm-int8": gemm(12, 40, 0, "int8"),
}


@pytest.mark.parametrize("kernel", ["avx2", pytest.param("vnni", marks=pytest.mark.skipif(
    not HAS_VNNI, reason="this CPU has no AVX-512 VNNI to run vpdpbusd (compiling it needs none)"))])
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_packed_ops_equal_the_float_simulation(case, kernel):
    shape, body = CASES[case]
    mod = _module(shape, body)
    folded, report = fold_qdq(mod, dot=packed_dot.KERNELS[kernel])
    assert report.packed == 1 and sum(report.int8_ops.values()) == 1 and not float_compute_ops(folded)
    assert any(isinstance(f, tvm.tirx.PrimFunc) for _, f in folded.functions_items())
    x = np.random.RandomState(1).uniform(-3, 8, shape).astype("float32")
    ref, out = _run(mod, x, MCPU[kernel]), _run(folded, x, MCPU[kernel])
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_weight_packing_round_trips():
    k = packed_dot.KERNELS["vnni"]
    w = R.randint(-127, 128, (20, 6)).astype("int8")
    p = packed_dot.pack_weight(w, k)
    assert p.shape == (2, 2, 16, 4) and p.dtype == np.int8
    back = p.transpose(0, 2, 1, 3).reshape(32, 8)
    assert np.array_equal(back[:20, :6], w) and not back[20:].any() and not back[:, 6:].any()


def test_metaschedule_tensorizes_the_packed_gemm(tmp_path):
    """A few trials of the AVX2 space: the best record uses the intrinsic and stays exact."""
    from tvm.s_tir import meta_schedule as ms

    from edgenas.compile import fastinspect

    fastinspect.install(warm=False)
    k = packed_dot.KERNELS["avx2"]
    func = packed_dot.packed_dot_func((1, 32, 6, 6), "uint8", 16, k).with_attr("global_symbol", "main")
    tgt = tvm.target.Target({"kind": "llvm", "mcpu": "haswell", "num-cores": 1})
    db = ms.tir_integration.tune_tir(
        func, tgt, str(tmp_path), max_trials_global=16, num_trials_per_iter=8, space=packed_dot.space_generator(k),
        builder=ms.builder.LocalBuilder(max_workers=2, initializer=fastinspect.install))
    sch = ms.tir_integration.compile_tir(db, func, tgt)
    assert sch is not None and k.intrin in str(sch.trace)
    x = R.randint(0, 256, (1, 32, 6, 6)).astype("uint8")
    w = R.randint(-127, 128, (16, 32)).astype("int8")
    out = tvm.runtime.tensor(np.zeros((1, 16, 6, 6), "int32"))
    tvm.compile(sch.mod, target=tgt).jit()["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(packed_dot.pack_weight(w, k)), out)
    assert np.array_equal(out.numpy(), np.einsum("oc,nchw->nohw", w.astype(np.int64), x.astype(np.int64)))
