#!/usr/bin/env python
"""Where the time goes: per-kernel profile of compiled TVM libraries (Relax VM instrumentation).

    python scripts/profile_int8.py build/bench/mnv2-0.35-96/edgenas_int8_tuned.so \
        build/bench/mnv2-0.35-96/TVM_fp32_tuned.so --shape 1,3,96,96 --threads 1 --json build/bench/profile.json

Each VM call of a kernel is timed (``VirtualMachine.set_instrument``, before/after) over
``--iters`` runs; kernels are grouped by what they do, read from the kernel's name and argument
shapes (``packed_dot``: the tensorized int8 GEMM, split into 1x1 convs / matmuls and k x k convs
by its weight's taps; ``depthwise``: edgenas' depthwise kernels; ``fused_inverted_residual``:
edgenas' fused MobileNetV2 block (three convs and the residual in one kernel); for TVM's own convs, depthwise is
a 4-d weight with one input channel per group and k > 1, pointwise a 4-d (O, I, 1, 1) weight, and
other convs are "dense").
Instrumentation adds a few µs per call, so shares are approximate for kernels of a few µs; the
whole-model number printed beside it is the plain (uninstrumented) median for reference.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from collections import defaultdict
from pathlib import Path


def category(symbol: str, shapes: list[tuple[int, ...]]) -> str:
    if "fused_inverted_residual" in symbol:  # compile/fused_block.py: expand, depthwise, project + residual
        return "fused inverted-residual block"
    if "packed_dot" in symbol:  # edgenas' tensorized GEMM (compile/packed_dot.py): convs and matmuls
        kxk = any(len(s) == 6 and s[1] * s[2] > 1 for s in shapes)  # conv_dot_func's (O/L, KH, KW, C/K, L, K) weight
        return "packed dot, k x k conv" if kxk else "packed dot (1x1 conv, matmul)"
    if "depthwise" in symbol:  # edgenas' depthwise kernel (compile/depthwise.py), channels-last
        return "conv depthwise"
    if "conv2d" in symbol:
        for s in shapes:
            if len(s) == 4 and s[2] == s[3] and s[2] > 1 and s[1] == 1:
                return "conv depthwise"
        if any(len(s) == 4 and s[2] == s[3] == 1 and s[0] > 1 and s[1] > 1 for s in shapes):  # not a (1,C,1,1) bias
            return "conv pointwise 1x1"
        return "conv k>1 (dense)"
    for key, name in (("matmul", "matmul/dense"), ("dense", "matmul/dense"), ("mean", "pool"), ("pool", "pool"),
                      ("quantize", "quantize/requantize"), ("add", "elementwise add"), ("reshape", "layout"),
                      ("transpose", "layout")):
        if key in symbol:
            return name
    return "other"


def profile(lib: str, shape: tuple[int, ...], iters: int) -> dict:
    import numpy as np
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(tvm.runtime.load_module(lib), tvm.cpu())
    x = tvm.runtime.tensor(np.random.default_rng(0).standard_normal(shape).astype("float32"))
    for _ in range(5):
        vm["main"](x)
    plain = vm.time_evaluator("main", tvm.cpu(), number=1, repeat=50, min_repeat_ms=20)(x)
    total: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    cat: dict[str, str] = {}
    state: dict = {}

    def instrument(func, symbol, before, ret, *args):
        if before:
            if symbol not in cat:
                shapes = [tuple(a.shape) for a in args if hasattr(a, "shape")]
                cat[symbol] = category(symbol, shapes)
            state[symbol] = time.perf_counter()
        else:
            total[symbol] += time.perf_counter() - state.pop(symbol)
            calls[symbol] += 1
        return 0

    vm.set_instrument(tvm.runtime.convert(instrument) if hasattr(tvm.runtime, "convert") else instrument)
    t0 = time.perf_counter()
    for _ in range(iters):
        vm["main"](x)
    wall = (time.perf_counter() - t0) / iters
    kernels = [{"kernel": s, "category": cat.get(s, "other"), "calls": calls[s] // iters, "us": total[s] / iters * 1e6}
               for s in total if not s.startswith("vm.builtin")]
    by_cat: dict[str, float] = defaultdict(float)
    for k in kernels:
        by_cat[k["category"]] += k["us"]
    kernel_us = sum(k["us"] for k in kernels)
    return {"library": lib, "plain_median_ms": sorted(plain.results)[len(plain.results) // 2] * 1e3,
            "instrumented_ms": wall * 1e3, "kernel_us": kernel_us,
            "by_category": {c: {"us": us, "share": us / kernel_us} for c, us in sorted(by_cat.items(), key=lambda kv: -kv[1])},
            "top": sorted(kernels, key=lambda k: -k["us"])[:12], "kernels": kernels}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("libs", nargs="+")
    ap.add_argument("--shape", default="1,3,96,96")
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1, help="TVM_NUM_THREADS (set before tvm loads)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    shape = tuple(int(v) for v in args.shape.split(","))
    results = [profile(lib, shape, args.iters) for lib in args.libs]
    cats = list(dict.fromkeys(c for r in results for c in r["by_category"]))
    names = [re.sub(r"\.so$", "", Path(r["library"]).name) for r in results]
    print(f"{'category (µs per inference, share)':36s}" + "".join(f"{n:>28s}" for n in names))
    for c in cats:
        cells = []
        for r in results:
            v = r["by_category"].get(c)
            cells.append(f"{v['us']:9.1f} µs {100 * v['share']:5.1f} %" if v else "-")
        print(f"{c:36s}" + "".join(f"{x:>28s}" for x in cells))
    print(f"{'kernels total':36s}" + "".join(f"{r['kernel_us']:>25.1f} µs" for r in results))
    print(f"{'whole model, uninstrumented median':36s}" + "".join(f"{r['plain_median_ms'] * 1e3:>25.1f} µs" for r in results))
    for r, n in zip(results, names):
        print(f"\ntop kernels of {n}:")
        for k in r["top"][:8]:
            print(f"  {k['us']:8.1f} µs  ×{k['calls']}  {k['category']:20s} {k['kernel'][:70]}")
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "shape": shape, "results": results}, indent=1))


if __name__ == "__main__":
    main()
