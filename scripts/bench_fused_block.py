#!/usr/bin/env python
"""Fused inverted-residual block (an experiment, issue #14 item 5): one kernel against edgenas' three.

Why: a MobileNetV2 block (1x1 expand to 6C -> depthwise 3x3 -> 1x1 project, + residual) runs in
edgenas as three kernels, and the 6x-wide expanded tensor makes two round trips through memory
(written by the expand, padded and read by the depthwise; the depthwise's output written and
read by the projection). This script builds the block as ONE kernel that works row by row, so the
expanded rows live in a small ring buffer, and measures it against the unfused kernels in the
same run. The kernel is the compiler's (``edgenas/compile/fused_block.py``, which the VNNI
build now uses for every eligible block); this script measures it on its own.

The block, in the integer domain, channels-last (uint8 activations, int8 weights):

    e = requant(x @ W1 - z_x * sum(W1))    ReLU6 bounds [z_e, hi_e]   (expand, C -> E = 6C)
    d = requant(dw3x3(e, pad z_e) + bias)  ReLU6 bounds [z_d, hi_d]   (depthwise, stride 1, pad 1)
    p = requant(d @ W2 - z_d * sum(W2))    bounds [0, 255]            (project, E -> C)
    y = clip(p - z_p + x - z_x + z_y, 0, 255)                          (residual)

``requant(acc) = uint8(clip(nearbyint(float32(acc) * s + b), lo, hi))``, per-channel float32 s
and b: the requantize ``qdq_rewrite`` emits. The residual add takes equal scales for p, x and y
(so it is an integer add; edgenas computes it as ``quantize(dequantize(p) + dequantize(x))`` in
float32, which with equal scales gives the same integers: the float error is far below 0.5).

* **unfused** (what edgenas builds today): a Relax graph of the very calls ``qdq_rewrite`` emits
  (``packed_dot.conv_dot_func`` + ``pack_conv_weight``, ``depthwise.depthwise_func`` +
  ``weight``/``bias``, the requantize ops, the residual as dequantize-add-quantize) put through
  ``pipeline.fuse`` and ``build.build`` for ``x86-avx512-vnni``: three kernels (the residual
  fuses into the projection's), each with its default schedule (``default_schedule``).
* **fused**: ``fused_block.fused_func``, one hand-scheduled TIR function. Threads over bands of output
  rows (``T.parallel``, one band per thread: the band count is a compile-time constant); each
  band walks its rows keeping the last three expanded rows (uint8, requantized, zero-point
  columns at both ends) in a ring: expand one row, then the depthwise of the row above it into
  a one-row buffer, then the projection + residual of that row straight into the output. Only
  the two rows at each band edge are expanded twice. Both 1x1 GEMMs run ``vpdpbusd`` in the
  register block ``default_schedule.register_block`` picks for the unfused kernels (same
  pixel x 16-channel-group block, same reduction order): the loops are written out by hand
  with the body of ``packed_dot``'s ``edgenas_dot_16x4_vnni`` intrinsic, as
  ``sch.tensorize`` would have inlined it. The depthwise has the unfused kernel's form (uint8
  x int16 into int32, so LLVM uses ``vpmaddwd``; the pixel loop inside the channel vector);
  the requantizes are the same expressions, and so is the residual (in float32 as the
  unfused kernel computes it; with the equal scales here that is the integer add).

``--dw-lanes 8,16`` (the default) measures two pairs: both variants with the depthwise at 8
channels per vector, and both with 16 (what edgenas builds on this target since kernel version 2,
``default_schedule.depthwise_lanes``; the unfused one is set through ``DEPTHWISE_LANES`` for
each build), so that a gain from the wider depthwise is not mistaken for one from fusing.

Exactness: the fused and unfused outputs equal a numpy model of the same integer arithmetic bit
for bit (``tests/compile/test_fused_block.py``, and every bench run checks every library before
timing). The model computes each requantize as a float32 fused multiply-add (:func:`_fma32`):
that is what LLVM makes of ``acc * s + b`` in every kernel, fused or not.

Timing: each thread count in its own subprocess (``TVM_NUM_THREADS`` is read once per process),
every library called through the Relax VM, medians over rounds whose engine order rotates
(``bench_compile._blocked_ms``); the unfused kernels are also timed one by one. Needs a CPU
with AVX-512 VNNI. Results and conclusion: docs/int8_kernels.md, "Fused inverted-residual
block", "The experiment".

    flock /tmp/edgenas-bench.lock python scripts/bench_fused_block.py --threads 1,2 --json build/bench/fused_block.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


@dataclass(frozen=True)
class Shape:
    name: str
    h: int
    w: int
    c: int
    e: int


# MobileNetV2-1.0 (224x224) residual blocks, and MobileNetV2-0.35 at 96x96 (its 24x24 block has
# 8 channels, expand 48: div8(24 * 0.35)); 24x24x16 e96 is the "(24, 24, 16) expand 96".
SHAPES = [Shape("mnv2-1.0 56x56x24 e144", 56, 56, 24, 144), Shape("mnv2-1.0 28x28x32 e192", 28, 28, 32, 192),
          Shape("mnv2-1.0 14x14x64 e384", 14, 14, 64, 384), Shape("mnv2-0.35 24x24x8 e48", 24, 24, 8, 48),
          Shape("24x24x16 e96", 24, 24, 16, 96)]


# ---------------------------------------------------------------- parameters and the numpy model
def _extreme(rng, shape, dtype):
    """Random integers with the type's extremes planted (every 3rd the min, every 5th the max)."""
    info = np.iinfo(dtype)
    x = rng.integers(info.min, info.max + 1, shape).astype(dtype)
    flat = x.reshape(-1)
    flat[::3], flat[1::5] = info.min, info.max
    return x


def _fma32(a: np.ndarray, s: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a * s + b`` in float32 with ONE rounding, as the kernels compute it: TVM lets LLVM contract
    a multiply feeding an add into ``vfmadd`` (``AllowFPOpFusion = Fast``), so the requantize of
    every kernel, fused or not, is a fused multiply-add. Rounding twice (float32 product, then
    float32 sum) differed from the kernels in about one value in 10^5.

    The product of two float32 is exact in float64; the sum is rounded to float64, then to
    float32. That double rounding differs from one rounding only where the float64 sum was
    inexact and landed exactly halfway between two float32: those few values are rounded again
    from the exact rational value."""
    from fractions import Fraction

    a32, s32, b32 = np.broadcast_arrays(a.astype(np.float32), s.astype(np.float32), b.astype(np.float32))
    p, b64 = a32.astype(np.float64) * s32.astype(np.float64), b32.astype(np.float64)
    v = p + b64
    bv = v - p
    err = (p - (v - bv)) + (b64 - bv)                       # TwoSum: v + err == p + b exactly
    r = v.astype(np.float32)
    r64, gap = r.astype(np.float64), np.abs(v - r.astype(np.float64))
    half = ((gap == (np.nextafter(r, np.float32(np.inf)).astype(np.float64) - r64) / 2)
            | (gap == (r64 - np.nextafter(r, np.float32(-np.inf)).astype(np.float64)) / 2))
    for i in zip(*np.nonzero(half & (err != 0))):
        exact = Fraction(float(a32[i])) * Fraction(float(s32[i])) + Fraction(float(b32[i]))
        near = [np.nextafter(r[i], np.float32(-np.inf)), r[i], np.nextafter(r[i], np.float32(np.inf))]
        r[i] = min(near, key=lambda c: (abs(Fraction(float(c)) - exact), int(np.float32(c).view(np.uint32)) & 1))
    return r


def _requant(acc, s, b, lo, hi):
    """``qdq_rewrite``'s requantize: float32 fused multiply-add, round half to even, clip."""
    return np.clip(np.rint(_fma32(acc, s, b)), lo, hi).astype(np.uint8)


def _scale_bias(rng, acc, zero, dyadic):
    """Per-channel (s, b) that spread ``acc`` over about [-60, 320], so both clip bounds are hit.
    ``dyadic``: powers of two and quarter-integer biases, so ``acc * s`` is exact in float32
    (whether or not LLVM fuses the multiply-add) and ties to even are exercised."""
    std = acc.reshape(-1, acc.shape[-1]).std(0) + 1.0
    s = (rng.uniform(0.5, 1.5, std.shape) * 100.0 / std).astype(np.float32)
    b = (zero + rng.uniform(-40, 80, std.shape)).astype(np.float32)
    if dyadic:
        s = np.exp2(np.round(np.log2(s))).astype(np.float32)
        b = (np.round(b * 4) / 4).astype(np.float32)
    return s, b


def make_params(shape: Shape, seed: int = 0, dyadic: bool = False) -> dict:
    """Random inputs, weights and quantization parameters of one block, and the numpy model's
    intermediate and final integers (``e``, ``d``, ``p``, ``y``)."""
    rng = np.random.default_rng(seed)
    h, w, c, e = shape.h, shape.w, shape.c, shape.e
    P = {"shape": shape}
    x = _extreme(rng, (1, h, w, c), "uint8")
    zx, ze, zd, zp, zy = (int(v) for v in rng.integers(0, 256, 5))
    ze, zd = ze % 48, zd % 48  # ReLU6 outputs: the zero point is the lower bound
    hie, hid = int(rng.integers(200, 256)), int(rng.integers(200, 256))
    w1 = _extreme(rng, (e, c), "int8")
    wd = _extreme(rng, (e, 1, 3, 3), "int8")
    w2 = _extreme(rng, (c, e), "int8")
    xi = x.astype(np.int64)
    acc1 = xi @ w1.T.astype(np.int64) - zx * w1.astype(np.int64).sum(1)
    s1, b1 = _scale_bias(rng, acc1, ze, dyadic)
    ev = _requant(acc1, s1, b1, ze, hie)
    ep = np.pad(ev.astype(np.int64) - ze, ((0, 0), (1, 1), (1, 1), (0, 0)))
    acc2 = sum(ep[:, i:i + h, j:j + w] * wd[:, 0, i, j].astype(np.int64) for i in range(3) for j in range(3))
    s2, b2 = _scale_bias(rng, acc2, zd, dyadic)
    dv = _requant(acc2, s2, b2, zd, hid)
    acc3 = dv.astype(np.int64) @ w2.T.astype(np.int64) - zd * w2.astype(np.int64).sum(1)
    s3, b3 = _scale_bias(rng, acc3, zp, dyadic)
    pv = _requant(acc3, s3, b3, 0, 255)
    y = np.clip(pv.astype(np.int64) - zp + xi - zx + zy, 0, 255).astype(np.uint8)
    P.update(x=x, w1=w1, wd=wd, w2=w2, zx=zx, ze=ze, zd=zd, zp=zp, zy=zy, hie=hie, hid=hid,
             s1=s1, b1=b1, s2=s2, b2=b2, s3=s3, b3=b3, e=ev, d=dv, p=pv, y=y)
    return P


# ---------------------------------------------------------------- the unfused block: edgenas' kernels
def vnni_spec():
    """``x86-avx512-vnni`` with this host's core count (as ``bench_compile.vnni_spec``)."""
    import dataclasses

    from edgenas.target import get_target

    spec = get_target("x86-avx512-vnni")
    return dataclasses.replace(spec, tvm_target={**spec.tvm_target, "num-cores": os.cpu_count()})


def _nhwc(v: np.ndarray) -> np.ndarray:
    return v.reshape(1, 1, 1, -1)


def unfused_module(P: dict, spec):
    """The block as ``qdq_rewrite`` writes it (its kernel builders, its requantize ops, the
    residual as dequantize-add-quantize), through ``pipeline.fuse``: the module edgenas builds."""
    from tvm import relax

    from edgenas.compile import depthwise, packed_dot, pipeline

    shape = P["shape"]
    k = packed_dot.KERNELS["vnni"]
    h, w, c, e = shape.h, shape.w, shape.c, shape.e
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, h, w, c), "uint8"))

    def requant(acc, s, b, lo, hi):
        out = relax.op.add(relax.op.multiply(relax.op.astype(acc, "float32"), relax.const(_nhwc(s))),
                           relax.const(_nhwc(b)))
        return relax.op.astype(relax.op.clip(relax.op.round(out), lo, hi), "uint8")

    def conv1x1(v, wq, zero, cin, cout):
        func, out_shape = packed_dot.conv_dot_func((1, h, w, cin), "uint8", cout, k, (1, 1), (1, 1), (0, 0, 0, 0), zero)
        acc = relax.call_tir(bb.add_func(func, "packed_dot"),
                             [v, relax.const(packed_dot.pack_conv_weight(wq[:, :, None, None], k))],
                             relax.TensorType(out_shape, "int32"))
        corr = (wq.astype(np.int64).sum(1) * zero).astype("int32")
        return relax.op.subtract(acc, relax.const(_nhwc(corr))) if zero else acc

    with bb.function("main", [x]):
        with bb.dataflow():
            ev = bb.emit(requant(conv1x1(x, P["w1"], P["zx"], c, e), P["s1"], P["b1"], P["ze"], P["hie"]))
            func, out_shape = depthwise.depthwise_func((1, h, w, e), "uint8", (3, 3), (1, 1), (1, 1, 1, 1), P["ze"])
            acc2 = relax.call_tir(bb.add_func(func, "depthwise_conv2d"),
                                  [ev, relax.const(depthwise.weight(P["wd"])),
                                   relax.const(depthwise.bias(P["wd"], "uint8", P["ze"]))],
                                  relax.TensorType(out_shape, "int32"))
            dv = bb.emit(requant(acc2, P["s2"], P["b2"], P["zd"], P["hid"]))
            pv = bb.emit(requant(conv1x1(dv, P["w2"], P["zd"], e, c), P["s3"], P["b3"], 0, 255))
            scale = relax.const(np.float32(RESIDUAL_SCALE))

            def dq(v, z):
                return relax.op.dequantize(v, scale, relax.const(np.uint8(z)), out_dtype="float32")

            y = bb.emit(relax.op.quantize(relax.op.add(dq(pv, P["zp"]), dq(x, P["zx"])), scale,
                                          relax.const(np.uint8(P["zy"])), out_dtype="uint8"))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return pipeline.fuse(bb.get(), spec)


# ---------------------------------------------------------------- the fused block: one kernel
RESIDUAL_SCALE = 0.05  # p, x and y share it in unfused_module (an integer add, as the numpy model computes)


def block(P: dict):
    """``fused_block.Block`` of the parameters: clip bounds as the model's, equal residual scales."""
    from edgenas.compile import fused_block

    s = P["shape"]
    res = fused_block.Residual(0, 255, P["zp"], RESIDUAL_SCALE, P["zx"], RESIDUAL_SCALE, P["zy"], RESIDUAL_SCALE,
                               x_first=False)
    return fused_block.Block(s.h, s.w, s.c, s.e, P["ze"], P["ze"], P["hie"], P["zd"], P["hid"], res)


def fused_args(P: dict) -> list[np.ndarray]:
    """The constant arguments of the fused kernel, packed as the unfused kernels pack them."""
    from edgenas.compile import fused_block

    return fused_block.pack_args(P["w1"], P["wd"], P["w2"], P["zx"], P["ze"], P["zd"], P["s1"], P["b1"], P["s2"],
                                 P["b2"], P["s3"], P["b3"]).arrays()


def fused_module(P: dict, bands: int, dw_lanes: int = 8):
    """A Relax module that calls ``fused_block.fused_func`` once, so both variants run through the VM."""
    from tvm import relax

    from edgenas.compile import fused_block

    s = P["shape"]
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, s.h, s.w, s.c), "uint8"))
    with bb.function("main", [x]):
        with bb.dataflow():
            gv = bb.add_func(fused_block.fused_func(block(P), bands, dw_lanes), fused_block.NAME)
            out = bb.emit_output(relax.call_tir(gv, [x, *(relax.const(a) for a in fused_args(P))],
                                                relax.TensorType((1, s.h, s.w, s.c), "uint8")))
        bb.emit_func_output(out)
    return bb.get()


def build(mod, path: Path, spec=None, dw_lanes: int | None = None) -> Path:
    """``build.build`` for ``x86-avx512-vnni``; ``dw_lanes`` overrides the default depthwise
    schedule's channels per vector (``default_schedule.DEPTHWISE_LANES``) for this build only."""
    from edgenas.compile import build as build_mod
    from edgenas.compile import default_schedule

    saved = default_schedule.DEPTHWISE_LANES
    default_schedule.DEPTHWISE_LANES = dw_lanes or saved
    try:
        lib, skipped = build_mod.build(mod, spec or vnni_spec(), path)
    finally:
        default_schedule.DEPTHWISE_LANES = saved
    assert not skipped
    return lib


def run(lib: Path, x: np.ndarray) -> np.ndarray:
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(tvm.runtime.load_module(str(lib)), tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x)).numpy()


def kernel_names(mod) -> list[str]:
    import tvm

    return sorted(gv.name_hint for gv, f in mod.functions.items() if isinstance(f, tvm.tirx.PrimFunc))


# ---------------------------------------------------------------- the experiment
def engines(lanes: list[int]) -> list[tuple[str, str]]:
    """(unfused, fused) engine names per depthwise width; the first pair is edgenas' 8 lanes."""
    return [(f"unfused dw{n}", f"fused dw{n}") for n in lanes]


def build_all(shapes: list[Shape], threads: list[int], lanes: list[int], work: Path, log) -> list[dict]:
    """Per shape: the unfused library and one fused library per band count (one band per
    thread), for each depthwise width, each checked bit for bit against the numpy model
    before anything is timed."""
    spec = vnni_spec()
    out = []
    for i, s in enumerate(shapes):
        P = make_params(s, seed=i)
        np.save(work / f"x{i}.npy", P["x"])
        t0 = time.perf_counter()
        libs = {}
        for (u, f), n in zip(engines(lanes), lanes):
            # a fresh module per build: building one IRModule object twice gave the first build's
            # schedules again (the second DEPTHWISE_LANES was ignored)
            um = unfused_module(P, spec)
            libs[u] = str(build(um, work / f"unfused{i}_dw{n}.so", spec, dw_lanes=n))
            for b in sorted(set(threads)):
                libs[f"{f} b{b}"] = str(build(fused_module(P, b, n), work / f"fused{i}_dw{n}_b{b}.so", spec))
        for name, lib in libs.items():
            got = run(Path(lib), P["x"])
            if not np.array_equal(got, P["y"]):
                raise SystemExit(f"{s.name}: {name} differs from the numpy model in {(got != P['y']).sum()} of {got.size} values")
        kernels = kernel_names(um)
        if len(kernels) != 3 or sum("packed_dot" in k for k in kernels) != 2 or sum("depthwise" in k for k in kernels) != 1:
            raise SystemExit(f"{s.name}: expected edgenas' three kernels (expand, depthwise, project + residual), got {kernels}")
        log(f"{s.name}: {len(libs)} libraries built, all exact ({len(kernels)} unfused kernels, "
            f"{time.perf_counter() - t0:.0f} s)")
        out.append({"shape": s.name, "x": str(work / f"x{i}.npy"), "libs": libs, "unfused_kernels": kernels})
    return out


def measure_worker(items: list[dict], threads: int, lanes: list[int], rounds: int) -> dict:
    """In a process whose TVM pool has ``threads`` threads: per shape, every engine timed by
    ``bench_compile._blocked_ms`` (rounds of blocks, engine order rotating), through the VM."""
    import importlib.util

    import tvm
    from tvm import relax

    spec = importlib.util.spec_from_file_location("bench_compile", REPO / "scripts" / "bench_compile.py")
    bench_compile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_compile)
    out = {}
    for it in items:
        x = tvm.runtime.tensor(np.load(it["x"]))
        fns = {}
        for u, f in engines(lanes):
            for engine, key in ((u, u), (f, f"{f} b{threads}")):
                vm = relax.VirtualMachine(tvm.runtime.load_module(it["libs"][key]), tvm.cpu())
                fns[engine] = lambda vm=vm: vm["main"](x)
        out[it["shape"]] = bench_compile._blocked_ms(fns, rounds=rounds)
        out[it["shape"]]["kernels"] = _kernel_us(it["libs"][engines(lanes)[0][0]], x)
    return out


def _kernel_us(lib: str, x, calls: int = 200) -> dict:
    """Median µs of each kernel of an unfused library, timed around each VM call of it
    (``VirtualMachine.set_instrument``, as ``scripts/profile_int8.py``: a few µs of overhead each)."""
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(tvm.runtime.load_module(lib), tvm.cpu())
    state, times = {}, {}

    def instrument(func, symbol, before, ret, *args):
        if symbol.startswith("fused_"):
            if before:
                state["t"] = time.perf_counter()
            else:
                times.setdefault(symbol, []).append(time.perf_counter() - state.pop("t"))
        return 0

    vm.set_instrument(instrument)
    for _ in range(calls):
        vm["main"](x)
    out = {}
    for sym, t in times.items():
        name = "depthwise" if "depthwise" in sym else ("project" if "dequantize" in sym else "expand")
        out[name] = round(float(np.median(t)) * 1e6, 1)
    return out


def measure(items: list[dict], threads: int, lanes: list[int], rounds: int) -> dict:
    env = dict(os.environ, TVM_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    r = subprocess.run([sys.executable, __file__, "--measure-worker", str(threads), "--rounds", str(rounds),
                        "--dw-lanes", ",".join(map(str, lanes))],
                       input=json.dumps(items), capture_output=True, text=True, env=env, check=False)
    if r.returncode != 0:
        raise SystemExit(f"measurement worker failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def report(results: dict) -> None:
    from edgenas.compile import default_schedule, packed_dot

    threads, lanes = results["threads"], results["dw_lanes"]
    print(f"\nfused vs unfused inverted-residual block, µs per block (median of rotated rounds); {results['cpu']}, "
          f"x86-avx512-vnni, load {results['loadavg_start']} -> {results['loadavg_end']}")
    for u, f in engines(lanes):
        today = f"unfused dw{default_schedule.depthwise_lanes(packed_dot.KERNELS['vnni'])}"
        print(f"\n{u} (edgenas today)" if u == today else f"\n{u} (default_schedule.DEPTHWISE_LANES = "
              f"{u.split('dw')[1]})", f"against {f}; ratio = fused / unfused (below 1: fused is faster)")
        head = f"{'block (H x W x C, expand E)':28s}" + "".join(f" | {t} thr unfused | {t} thr fused | ratio" for t in threads)
        print(head)
        print("-" * len(head))
        for name, row in results["blocks"].items():
            line = f"{name:28s}"
            for t in threads:
                m = row[str(t)]
                line += f" | {m[u]['us']:13.1f} | {m[f]['us']:11.1f} | {m[f]['us'] / m[u]['us']:5.2f}"
            print(line)
        line = f"{'all blocks':28s}"
        for t in threads:
            tu = sum(r[str(t)][u]["us"] for r in results["blocks"].values())
            tf = sum(r[str(t)][f]["us"] for r in results["blocks"].values())
            line += f" | {tu:13.1f} | {tf:11.1f} | {tf / tu:5.2f}"
        print(line)
    u0 = engines(lanes)[0][0]
    print(f"\n{u0}, its three kernels timed one by one (µs, medians, VM instrumentation: a few µs each of overhead)")
    for name, row in results["blocks"].items():
        print(f"{name:28s}" + "".join(
            f" | {t} thr: " + ", ".join(f"{k} {v:.1f}" for k, v in row[f"unfused_dw{lanes[0]}_kernels_us_{t}"].items())
            for t in threads))
    for name, row in results["blocks"].items():
        for t in threads:
            noisy = {e: m["spread"] for e, m in row[str(t)].items() if m["spread"] > 0.1}
            if noisy:
                print(f"{name} at {t} thread(s): per-round medians spread over "
                      + ", ".join(f"{e} {v:.0%}" for e, v in noisy.items()) + " (read those ratios loosely)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (one subprocess each)")
    ap.add_argument("--shapes", default="all", help=f"comma-separated indices into {[s.name for s in SHAPES]}")
    ap.add_argument("--dw-lanes", default="8,16",
                    help="depthwise channels per vector, comma-separated: each width is one unfused/fused pair "
                         "(8: edgenas' default schedule; 16: both kernels with 16)")
    ap.add_argument("--rounds", type=int, default=7, help="rounds of rotated blocks (bench_compile._blocked_ms)")
    ap.add_argument("--work", type=Path, default=None, help="where the libraries go (default: a temporary directory)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here too")
    ap.add_argument("--measure-worker", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    lanes = [int(n) for n in args.dw_lanes.split(",")]
    if args.measure_worker is not None:
        print(json.dumps(measure_worker(json.loads(sys.stdin.read()), args.measure_worker, lanes, args.rounds)))
        return
    from edgenas.target import host_cpu_flags

    if not {"avx512bw", "avx512_vnni"} <= host_cpu_flags():
        raise SystemExit("this CPU has no AVX-512 VNNI: the experiment compares x86-avx512-vnni kernels")
    threads = [int(t) for t in args.threads.split(",")]
    shapes = SHAPES if args.shapes == "all" else [SHAPES[int(i)] for i in args.shapes.split(",")]

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    t_start = time.time()
    with tempfile.TemporaryDirectory(prefix="edgenas-fused-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        results = {"cpu": _cpu(), "target": "x86-avx512-vnni", "threads": threads, "dw_lanes": lanes,
                   "rounds": args.rounds, "fused_bands": "one per thread", "residual": "equal scales (integer add)",
                   "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "loadavg_start": _loadavg(),
                   "blocks": {}}
        items = build_all(shapes, threads, lanes, work, log)
        for it in items:
            results["blocks"][it["shape"]] = {"unfused_kernels": it["unfused_kernels"]}
        for t in threads:
            log(f"measuring at {t} thread(s)")
            for name, lat in measure(items, t, lanes, args.rounds).items():
                results["blocks"][name][f"unfused_dw{lanes[0]}_kernels_us_{t}"] = lat.pop("kernels")
                results["blocks"][name][str(t)] = {e: {"us": round(m["median"] * 1e3, 1), "p90_us": round(m["p90"] * 1e3, 1),
                                                       "spread": round(m["spread"], 3), "n": m["n"]}
                                                   for e, m in lat.items()}
    results["loadavg_end"] = _loadavg()
    results["wall_s"] = round(time.time() - t_start, 1)
    report(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
