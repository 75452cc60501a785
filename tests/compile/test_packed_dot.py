"""The x86 integer kernels: the packed dot-product GEMM (AVX2 pmaddwd or pmaddubsw, AVX-512 VNNI vpdpbusd,
AVX-VNNI vpdpbusd on ymm) of convs and matmuls and the int16-operand depthwise conv, channels-last.
Exact numerics against the float simulation, no transposes between kernels, and MetaSchedule
really tensorizing the GEMM."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import tvm
from tvm import relax

from edgenas.compile import depthwise, packed_dot
from edgenas.compile.qdq_rewrite import fold_qdq, float_compute_ops
from edgenas.target import get_target

from .irkit import NO_YMM_VNNI, avxvnni_mcpu, c, module as _module

R = np.random.RandomState(3)
HAS_VNNI = "avx512_vnni" in Path("/proc/cpuinfo").read_text()
AVXVNNI_MCPU = avxvnni_mcpu()   # alderlake on an AVX-VNNI CPU, cascadelake (EVEX ymm) on AVX-512 VNNI + VL
MCPU = {"avx2": "haswell", "vnni": "cascadelake", "avxvnni": AVXVNNI_MCPU}
AVXVNNI = pytest.param("avxvnni", marks=pytest.mark.skipif(AVXVNNI_MCPU is None, reason=NO_YMM_VNNI))


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


def depthwise_conv(ch, h, stride, padding, zero, xdtype):
    w = R.randint(-127, 128, (ch, 1, 3, 3)).astype("int8")

    def body(bb, x):
        wd = bb.emit(relax.op.dequantize(c(w), c(R.uniform(0.001, 0.01, ch), "float32"), c(np.zeros(ch), "int8"), axis=0))
        y = bb.emit(relax.op.nn.conv2d(_quant(bb, x, zero, xdtype), wd, strides=stride, padding=padding, groups=ch))
        return relax.op.clip(y, 0, 6)
    return (1, ch, h, h), body


CASES = {
    "pw-uint8-zp": pointwise(16, 24, 7, "uint8"),
    "pw-int8-padded": pointwise(6, 20, -3, "int8"),   # channels padded to K and L, int8 shifted to uint8
    "gemm-uint8": gemm(32, 10, 128, "uint8"),
    "gemm-int8": gemm(12, 40, 0, "int8"),
}
DEPTHWISE = {  # zero points at the range ends: x - z must stay exact in int16
    "dw-uint8-s1": depthwise_conv(8, 9, 1, 1, 255, "uint8"),
    "dw-int8-s2-zp": depthwise_conv(12, 10, 2, 1, -128, "int8"),
    "dw-int8-s2-asym-pad": depthwise_conv(6, 7, 2, (0, 1, 1, 0), 5, "int8"),
}


@pytest.mark.parametrize("kernel", ["avx2", pytest.param("vnni", marks=pytest.mark.skipif(
    not HAS_VNNI, reason="this CPU has no AVX-512 VNNI to run vpdpbusd (compiling it needs none)")), AVXVNNI])
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


@pytest.mark.parametrize("kernel", ["avx2", pytest.param("vnni", marks=pytest.mark.skipif(
    not HAS_VNNI, reason="no AVX-512 VNNI"))])
def test_integer_graph_is_channels_last_between_kernels(kernel):
    """1x1 conv -> ReLU -> quantize -> depthwise -> quantize, + the block's input (a residual):
    channels-last kernels with one transpose after the input's quantize and one at the output,
    none between them (layout.sink_transposes), within one step of the float simulation (the
    folded output quantize rounds in another order)."""
    w = R.randint(-127, 128, (10, 10, 1, 1)).astype("int8")
    wdw = R.randint(-127, 128, (10, 1, 3, 3)).astype("int8")
    s = c(0.03, "float32")

    def body(bb, x):
        xq = _quant(bb, x, -7, "int8")
        wd = bb.emit(relax.op.dequantize(c(w), c(R.uniform(0.001, 0.01, 10), "float32"), c(np.zeros(10), "int8"), axis=0))
        y = bb.emit(relax.op.nn.relu(bb.emit(relax.op.nn.conv2d(xq, wd))))
        q = bb.emit(relax.op.dequantize(bb.emit(relax.op.quantize(y, s, c(-128, "int8"), out_dtype="int8")), s,
                                        c(-128, "int8")))
        wd2 = bb.emit(relax.op.dequantize(c(wdw), c(R.uniform(0.001, 0.01, 10), "float32"), c(np.zeros(10), "int8"),
                                          axis=0))
        y2 = bb.emit(relax.op.nn.conv2d(q, wd2, padding=(1, 1), groups=10))
        q2 = bb.emit(relax.op.dequantize(bb.emit(relax.op.quantize(y2, s, c(0, "int8"), out_dtype="int8")), s,
                                         c(0, "int8")))
        return relax.op.add(q2, xq)

    mod = _module((1, 10, 6, 6), body)
    folded, report = fold_qdq(mod, dot=packed_dot.KERNELS[kernel])
    assert (report.packed, report.depthwise, report.requantized) == (1, 1, 2) and not float_compute_ops(folded)
    calls = [b.value for b in folded["main"].body.blocks[0].bindings if isinstance(b.value, relax.Call)]
    assert sum(v.op.name == "relax.permute_dims" for v in calls) == 2
    x = np.random.RandomState(5).uniform(-3, 8, (1, 10, 6, 6)).astype("float32")
    ref, out = _run(mod, x, MCPU[kernel]), _run(folded, x, MCPU[kernel])
    steps = np.rint(np.abs(out - ref) / np.float32(0.03))
    assert steps.max() <= 1 and np.mean(steps == 0) >= 0.99 and np.abs(ref).max() > 1


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_window_pool_between_kernels_runs_channels_last(pool):
    """ResNet's stem -> max pool -> conv: the pool runs on the NHWC value (layout.sink_transposes),
    so the graph keeps one transpose at each border, and equals the float simulation."""
    w1 = R.randint(-127, 128, (16, 3, 3, 3)).astype("int8")
    w2 = R.randint(-127, 128, (8, 16, 1, 1)).astype("int8")
    s = c(0.05, "float32")
    op = relax.op.nn.max_pool2d if pool == "max" else relax.op.nn.avg_pool2d

    def requant(bb, y, zero):
        return bb.emit(relax.op.dequantize(bb.emit(relax.op.quantize(y, s, c(zero, "int8"), out_dtype="int8")), s,
                                           c(zero, "int8")))

    def body(bb, x):
        wd1 = bb.emit(relax.op.dequantize(c(w1), c(R.uniform(0.001, 0.01, 16), "float32"), c(np.zeros(16), "int8"), axis=0))
        y = requant(bb, bb.emit(relax.op.nn.relu(bb.emit(relax.op.nn.conv2d(_quant(bb, x, 3, "int8"), wd1, padding=(1, 1))))), -128)
        p = requant(bb, bb.emit(op(y, (3, 3), (2, 2), (1, 1, 1, 1))), -128)
        wd2 = bb.emit(relax.op.dequantize(c(w2), c(R.uniform(0.001, 0.01, 8), "float32"), c(np.zeros(8), "int8"), axis=0))
        return relax.op.nn.conv2d(p, wd2)

    mod = _module((1, 3, 9, 9), body)
    folded, report = fold_qdq(mod, dot=packed_dot.KERNELS["avx2"])
    assert report.packed == 2 and not float_compute_ops(folded)
    calls = [b.value for b in folded["main"].body.blocks[0].bindings if isinstance(b.value, relax.Call)]
    assert sum(v.op.name == "relax.permute_dims" for v in calls) == 2
    (pooled,) = [v for v in calls if v.op.name.endswith("pool2d")]
    assert pooled.attrs.layout == "NHWC"
    x = np.random.RandomState(6).uniform(-3, 8, (1, 3, 9, 9)).astype("float32")
    ref, out = _run(mod, x, "haswell"), _run(folded, x, "haswell")
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


@pytest.mark.parametrize("case", list(DEPTHWISE), ids=list(DEPTHWISE))
def test_depthwise_kernel_equals_the_float_simulation(case):
    shape, body = DEPTHWISE[case]
    mod = _module(shape, body)
    folded, report = fold_qdq(mod, dot=packed_dot.KERNELS["avx2"])
    assert report.depthwise == 1 and report.packed == 0 and report.int8_ops == {"conv2d": 1}
    assert not float_compute_ops(folded)
    x = np.random.RandomState(2).uniform(-7, 14, shape).astype("float32")  # hits both clamps
    ref, out = _run(mod, x, "haswell"), _run(folded, x, "haswell")
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_depthwise_kernel_is_exact_in_integers():
    """The kernel alone against numpy at the extremes of int8 (x = -128 with z = 127, w = -127)."""
    func, out_shape = depthwise.depthwise_func((1, 5, 5, 4), "int8", (3, 3), (1, 1), (1, 1, 1, 1), 127)
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=tvm.target.Target({"kind": "llvm", "mcpu": "haswell"}))
    x = np.full((1, 4, 5, 5), -128, "int8")
    x[0, 1] = R.randint(-128, 128, (5, 5))
    w = np.full((4, 1, 3, 3), -127, "int8")
    out = tvm.runtime.tensor(np.zeros(out_shape, "int32"))
    lib["main"](tvm.runtime.tensor(x.transpose(0, 2, 3, 1).copy()), tvm.runtime.tensor(depthwise.weight(w)),
                tvm.runtime.tensor(depthwise.bias(w, "int8", 127)), out)
    xp = np.pad(x.astype(np.int64) - 127, ((0, 0), (0, 0), (1, 1), (1, 1)))
    ref = sum(xp[:, :, i:i + 5, j:j + 5] * w[None, :, 0, i, j, None, None] for i in range(3) for j in range(3))
    assert ref[0, 0, 2, 2] == 255 * 127 * 9  # an interior pixel: every tap at the extremes
    assert np.array_equal(out.numpy().transpose(0, 3, 1, 2), ref)


def test_pair_bound_decides_the_narrow_form():
    """``pmaddubsw`` sums two u8 x s8 products into a saturating int16: exact iff every adjacent
    pair of input channels has |w0| + |w1| <= 128 (255 * 128 fits, 255 * 129 does not)."""
    avx2 = packed_dot.KERNELS["avx2"]
    ok = np.array([[64, -64, 1, 127], [-64, 64, 0, 0]], "int8")      # pairs (64, -64), (1, 127): 128 each
    over = np.array([[64, -65, 0, 0]], "int8")                        # 129
    odd = np.array([[0, 0, 127]], "int8")                             # an unpaired last channel: 127 + padding 0
    assert packed_dot.fits(ok, avx2.narrow) and packed_dot.fitting(avx2, ok) is avx2.narrow
    assert not packed_dot.fits(over, avx2.narrow) and packed_dot.fitting(avx2, over) is avx2
    assert packed_dot.fitting(avx2, odd) is avx2.narrow
    vnni = packed_dot.KERNELS["vnni"]
    assert packed_dot.fitting(vnni, over) is vnni and vnni.members() == (vnni,)


def seven_bit_pointwise(cin, cout, bound):
    w = R.randint(-bound, bound + 1, (cout, cin, 3, 3)).astype("int8")
    w.reshape(-1)[::4] = bound

    def body(bb, x):
        wd = bb.emit(relax.op.dequantize(c(w), c(R.uniform(0.001, 0.01, cout), "float32"), c(np.zeros(cout), "int8"), axis=0))
        return bb.emit(relax.op.nn.conv2d(_quant(bb, x, 255, "uint8"), wd, padding=(1, 1), strides=(2, 2)))
    return (1, cin, 9, 7), body


@pytest.mark.parametrize("bound, narrow", [(64, True), (127, False)], ids=["7-bit", "8-bit"])
def test_avx2_uses_pmaddubsw_only_where_the_weight_fits(bound, narrow):
    """A 7-bit weight (QAT for x86-avx2, or onnxruntime's ``reduce_range``) goes to the narrow
    form, an 8-bit one to ``pmaddwd``; both equal the float simulation (zero point 255: every
    padded tap reads the activation's extreme)."""
    shape, body = seven_bit_pointwise(10, 12, bound)
    mod = _module(shape, body)
    folded, report = fold_qdq(mod, dot=packed_dot.KERNELS["avx2"])
    assert report.packed == 1 and report.narrow == int(narrow)
    assert ("packed GEMM, pmaddubsw (weight pairs fit int16)" in report.kernel_classes()) == narrow
    x = np.random.RandomState(4).uniform(-3, 20, shape).astype("float32")
    ref, out = _run(mod, x, "haswell"), _run(folded, x, "haswell")
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("kernel, packed", [("vnni", (2, 2, 16, 4)), ("avxvnni", (3, 2, 8, 4))])
def test_weight_packing_round_trips(kernel, packed):
    k = packed_dot.KERNELS[kernel]
    w = R.randint(-127, 128, (20, 6)).astype("int8")
    p = packed_dot.pack_weight(w, k)
    assert p.shape == packed and p.dtype == np.int8
    back = p.transpose(0, 2, 1, 3).reshape(packed[0] * packed[2], packed[1] * packed[3])
    assert np.array_equal(back[:20, :6], w) and not back[20:].any() and not back[:, 6:].any()


# x86-avx-vnni through edgenas' own pipeline (rewrite, fuse, default schedules): a padded int8 1x1
# conv, a matmul, and a strided padded 3x3 conv whose zero point 255 fills every padded tap
AVXVNNI_CASES = {"pw-int8-padded": CASES["pw-int8-padded"], "gemm-uint8": CASES["gemm-uint8"],
                 "3x3-s2-zp255": seven_bit_pointwise(10, 12, 127)}


def _edgenas_build(mod, spec):
    """``mod`` as ``compile_onnx`` builds it untuned for ``spec``: the int8 rewrite with the
    target's kernel, fuse, then the default schedules (the GEMM tensorized) and lowering."""
    from edgenas.compile import pipeline

    kernel = packed_dot.kernel_for(spec)
    folded, report = fold_qdq(mod, dot=kernel)
    assert report.packed == 1 and not float_compute_ops(folded)
    packed_dot.register()
    tgt = spec.tvm()
    with tgt, tvm.transform.PassContext(opt_level=3):
        return tvm.compile(pipeline.fuse(folded, spec), target=tgt,
                           relax_pipeline=pipeline.schedule_and_lower(spec, kernel=kernel))


def _dot_instructions(ex) -> tuple[list[str], str]:
    """The ``vpdpbusd`` lines of the library's assembly, and the whole assembly."""
    asm = "\n".join(m.inspect_source("asm") for m in ex.mod.imports if m.kind == "llvm")
    return [" ".join(ln.split()) for ln in asm.splitlines() if "vpdpbusd" in ln], asm


def _vex_ymm(line: str) -> bool:
    """A VEX-encoded ``vpdpbusd`` on ymm registers. For some of MetaSchedule's sampled tiles LLVM
    reads one operand from memory, a spill slot (``{vex} vpdpbusd 32(%rsp), %ymm0, %ymm1``; seen
    with 3 of 8 seeds of the design-space test), so a memory operand is allowed, a zmm register is not."""
    return line.startswith("{vex} vpdpbusd ") and line.count("%ymm") >= 2 and "zmm" not in line


def test_x86_avx_vnni_target_uses_the_ymm_kernel():
    spec = get_target("x86-avx-vnni")
    k = packed_dot.kernel_for(spec)
    assert k is packed_dot.KERNELS["avxvnni"]
    assert (k.lanes, k.depth, k.weight_dtype, k.members()) == (8, 4, "int8", (k,))
    assert spec.int8_weight_bits == 8 and spec.local_if_cpu_has == ("avx_vnni",)


@pytest.mark.parametrize("case", list(AVXVNNI_CASES), ids=list(AVXVNNI_CASES))
def test_x86_avx_vnni_target_compiles_to_vex_ymm_vpdpbusd(case):
    """The real target (mcpu alderlake: AVX-VNNI, no AVX-512), compiled only: every dot product is
    the VEX-encoded ``vpdpbusd`` on ymm registers, and no zmm register appears in the library
    (an AVX-512 instruction would fault on the client CPUs it is for). Running it needs AVX-VNNI:
    ``test_x86_avx_vnni_library_equals_the_float_simulation`` does that on such a CPU."""
    shape, body = AVXVNNI_CASES[case]
    dots, asm = _dot_instructions(_edgenas_build(_module(shape, body), get_target("x86-avx-vnni")))
    assert dots and all(_vex_ymm(d) for d in dots), dots[:4]
    assert "zmm" not in asm


@pytest.mark.skipif(AVXVNNI_MCPU is None, reason=NO_YMM_VNNI)
@pytest.mark.parametrize("case", list(AVXVNNI_CASES), ids=list(AVXVNNI_CASES))
def test_x86_avx_vnni_library_equals_the_float_simulation(case):
    """x86-avx-vnni's library run here: as itself on an AVX-VNNI CPU, else with mcpu cascadelake,
    whose AVX-512 VNNI + VL encode the same ymm ``vpdpbusd`` (EVEX): the same kernel, packing and
    register block, only the instruction's encoding differs."""
    spec = get_target("x86-avx-vnni")
    spec = dataclasses.replace(spec, tvm_target={**spec.tvm_target, "mcpu": AVXVNNI_MCPU, "num-cores": 2})
    shape, body = AVXVNNI_CASES[case]
    mod = _module(shape, body)
    ex = _edgenas_build(mod, spec)
    dots, _ = _dot_instructions(ex)
    assert dots and all("%ymm" in d and "%zmm" not in d for d in dots), dots[:4]
    x = np.random.RandomState(6).uniform(-3, 20, shape).astype("float32")
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
    ref = _run(mod, x, "haswell")
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_x86_avx_vnni_space_tensorizes_with_its_intrinsic():
    """x86-avx-vnni's MetaSchedule space (``space_generator`` of its kernel) without measuring:
    every design space of a 1x1 conv's GEMM, its postprocessors applied, calls the ymm
    ``vpdpbusd`` through the target's intrinsic, compiles for alderlake to its VEX form, and is
    exact where this CPU runs it. The ``conv-avxvnni`` tune below runs real trials (slow)."""
    from tvm.s_tir import meta_schedule as ms

    from edgenas.compile import fastinspect

    fastinspect.install(warm=False)
    spec = get_target("x86-avx-vnni")
    k = packed_dot.kernel_for(spec)
    func, _ = packed_dot.conv_dot_func((1, 8, 8, 32), "uint8", 16, k, (1, 1), (1, 1), (0, 0, 0, 0), 0)
    ctx = ms.TuneContext(mod=tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=spec.tvm(),
                         space_generator=packed_dot.space_generator(k), task_name="pw", num_threads=1)
    spaces = ctx.generate_design_space()
    assert spaces and all(k.intrin in str(s.trace) for s in spaces)
    x = R.randint(0, 256, (1, 8, 8, 32)).astype("uint8")
    w = R.randint(-128, 128, (16, 32)).astype("int8")
    x.reshape(-1)[::3], w.reshape(-1)[::3] = 255, -128   # the extremes: 255 * -128 * 4 per instruction
    ref = np.einsum("oc,nhwc->nhwo", w.astype(np.int64), x.astype(np.int64))
    wp = packed_dot.pack_conv_weight(w[:, :, None, None], k)
    for space in spaces:
        sch = space.copy()
        assert all(p.apply(sch) for p in ctx.space_generator.postprocs)
        assert "llvm.x86.avx512.vpdpbusd.256" in sch.mod.script()
        asm = tvm.compile(sch.mod, target=spec.tvm()).mod.inspect_source("asm")
        dots = [" ".join(ln.split()) for ln in asm.splitlines() if "vpdpbusd" in ln]
        assert dots and all(_vex_ymm(d) for d in dots), dots[:4]
        if AVXVNNI_MCPU is not None:
            out = tvm.runtime.tensor(np.zeros((1, 8, 8, 16), "int32"))
            lib = tvm.compile(sch.mod, target=tvm.target.Target({"kind": "llvm", "mcpu": AVXVNNI_MCPU, "num-cores": 1}))
            lib["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(wp), out)
            assert np.array_equal(out.numpy(), ref)


# matmul is slow (~50 s): the conv form tunes the same intrinsic, and the default-schedule tests
# check the matmul GEMM's exactness; together they kept the default run over 20 minutes
# conv-avxvnni (~90 s here) too: test_x86_avx_vnni_space_tensorizes_with_its_intrinsic checks its space quickly
@pytest.mark.parametrize("form", [pytest.param("matmul", marks=pytest.mark.slow), "conv", "conv-narrow",
                                  pytest.param("conv-avxvnni", marks=[pytest.mark.slow, pytest.mark.skipif(
                                      AVXVNNI_MCPU is None, reason=NO_YMM_VNNI)])])
def test_metaschedule_tensorizes_the_packed_gemm(tmp_path, form):
    """A few trials of the AVX2 space: the best record uses the intrinsic of the GEMM's form and
    stays exact (a matmul, and a channels-last 1x1 conv whose GEMM reads its input as it is; with
    a 7-bit weight, the narrow ``pmaddubsw`` form, whose rule shares the space). The same conv in
    x86-avx-vnni's space (its ymm ``vpdpbusd``), measured on a CPU that runs it (``AVXVNNI_MCPU``)."""
    from tvm.s_tir import meta_schedule as ms

    from edgenas.compile import fastinspect
    from edgenas.compile.tune import _foreign_handlers_detached

    fastinspect.install(warm=False)
    if form == "conv-avxvnni":
        family, mcpu = packed_dot.kernel_for(get_target("x86-avx-vnni")), AVXVNNI_MCPU
    else:
        family, mcpu = packed_dot.KERNELS["avx2"], "haswell"
    k = family.narrow if form == "conv-narrow" else family
    x = R.randint(0, 256, (1, 8, 8, 32)).astype("uint8")
    w = R.randint(-64, 65, (16, 32)).astype("int8") if k is family.narrow else R.randint(-127, 128, (16, 32)).astype("int8")
    ref = np.einsum("oc,nhwc->nhwo", w.astype(np.int64), x.astype(np.int64))
    if form.startswith("conv"):
        func, _ = packed_dot.conv_dot_func((1, 8, 8, 32), "uint8", 16, k, (1, 1), (1, 1), (0, 0, 0, 0), 0)
        wp, out = packed_dot.pack_conv_weight(w[:, :, None, None], k), np.zeros((1, 8, 8, 16), "int32")
    else:
        func, x, ref = packed_dot.packed_dot_func((64, 32), "uint8", 16, k), x.reshape(64, 32), ref.reshape(64, 16)
        wp, out = packed_dot.pack_weight(w, k), np.zeros((64, 16), "int32")
    func = func.with_attr("global_symbol", "main")
    tgt = tvm.target.Target({"kind": "llvm", "mcpu": mcpu, "num-cores": 1})
    with _foreign_handlers_detached():  # MetaSchedule's second logging setup in a process trips on pytest's
        db = ms.tir_integration.tune_tir(
            func, tgt, str(tmp_path), max_trials_global=16, num_trials_per_iter=8, space=packed_dot.space_generator(family),
            builder=ms.builder.LocalBuilder(max_workers=2, initializer=fastinspect.install))
    sch = ms.tir_integration.compile_tir(db, func, tgt)
    assert sch is not None and k.intrin in str(sch.trace)
    out = tvm.runtime.tensor(out)
    tvm.compile(sch.mod, target=tgt).jit()["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(wp), out)
    assert np.array_equal(out.numpy(), ref)
