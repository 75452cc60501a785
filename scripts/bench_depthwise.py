#!/usr/bin/env python
"""Depthwise conv, layer by layer: edgenas' int8 kernel (default schedule) against onnxruntime's.

Why: depthwise convs are about a quarter of MobileNetV2's int8 time in both engines, and a
per-layer comparison shows where a kernel change helps (stride 1 or 2, wide or narrow maps)
before a whole-model bench (scripts/bench_compile.py) can. Each layer of MobileNetV2-1.0 at
224x224 is a two-layer net (depthwise 3x3 -> ReLU6 -> depthwise 3x3), quantized by onnxruntime's
``quantize_static`` (uint8 activations, 7-bit per-channel weights, the x86-avx2 target's width);
only the *first* conv is timed, so in both engines it reads uint8 and writes the uint8 input of
the next quantized conv, requantize included. edgenas' kernel is timed by the Relax VM's
instrumentation, onnxruntime's ``QLinearConv`` node by its profiler; both add a few µs per call,
so the ratio is the figure to read, not the absolute time.

    flock /tmp/edgenas-bench.lock python scripts/bench_depthwise.py --threads 1 --json build/bench/dw.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# (input size, channels, stride): MobileNetV2-1.0's depthwise layers at 224x224 (repeats once each)
LAYERS = [(112, 32, 1), (112, 96, 2), (56, 144, 1), (56, 144, 2), (28, 192, 1), (28, 192, 2),
          (14, 384, 1), (14, 576, 1), (14, 576, 2), (7, 960, 1)]


def layer_model(work: Path, size: int, ch: int, stride: int) -> Path:
    import torch

    from edgenas.quantize.ort_static import quantize_static_onnx

    name = f"dw{size}_{ch}_s{stride}"
    fp32, q = work / f"{name}.onnx", work / f"{name}.qdq.onnx"
    shape = (1, ch, size, size)
    net = torch.nn.Sequential(torch.nn.Conv2d(ch, ch, 3, stride, 1, groups=ch), torch.nn.ReLU6(),
                              torch.nn.Conv2d(ch, ch, 3, 1, 1, groups=ch)).eval()
    torch.onnx.export(net, torch.randn(*shape), fp32, input_names=["input"], output_names=["out"], dynamo=False)
    return quantize_static_onnx(fp32, q, shape, reduce_range=True)


def edgenas_us(q: Path, shape, work: Path, iters: int) -> float:
    import tvm
    from tvm import relax

    from edgenas.compile import compile_onnx
    from edgenas.target import get_target

    lib = work / (q.stem + ".so")
    report = compile_onnx(q, get_target("x86-avx2"), lib, int8=True, trials=0, tuning_dir=work / "no-tuning")
    if report.kernels.get("depthwise") != 2:
        raise SystemExit(f"{q.name}: expected 2 convs on the depthwise kernel, got {report.kernels}")
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(lib)), tvm.cpu())
    x = tvm.runtime.tensor(np.random.default_rng(0).random(shape, dtype=np.float32))
    for _ in range(10):
        vm["main"](x)
    first: list[float] = []
    state: dict = {}

    def instrument(func, symbol, before, ret, *args):
        if "depthwise" in symbol:
            if before:
                state["t"] = time.perf_counter()
            else:
                state.setdefault("calls", []).append(time.perf_counter() - state.pop("t"))
        return 0

    vm.set_instrument(instrument)
    for _ in range(iters):
        state["calls"] = []
        vm["main"](x)
        first.append(state["calls"][0])
    return float(np.median(first) * 1e6)


def ort_us(q: Path, shape, threads: int, iters: int) -> float:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.enable_profiling = True
    so.profile_file_prefix = str(Path(tempfile.gettempdir()) / f"edgenas_dw_{os.getpid()}")
    sess = ort.InferenceSession(str(q), so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    for _ in range(iters + 10):
        sess.run(None, {"input": x})
    path = Path(sess.end_profiling())
    events = json.loads(path.read_text())
    path.unlink()
    convs = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")
             and e["args"].get("op_name") == "QLinearConv"]
    names = sorted({e["name"] for e in convs}, key=lambda n: min(e["ts"] for e in convs if e["name"] == n))
    durs = [e["dur"] for e in convs if e["name"] == names[0]][10:]  # the first conv, after the warm-up runs
    return float(np.median(durs))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="threads of both engines")
    ap.add_argument("--iters", type=int, default=200, help="timed runs per layer and engine")
    ap.add_argument("--json", type=Path, default=None, help="write the table here too")
    args = ap.parse_args(argv)
    os.environ["TVM_NUM_THREADS"] = str(args.threads)  # read once, when tvm loads
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgenas-bench-dw-") as tmp:
        work = Path(tmp)
        for size, ch, stride in LAYERS:
            q = layer_model(work, size, ch, stride)
            shape = (1, ch, size, size)
            e, o = edgenas_us(q, shape, work, args.iters), ort_us(q, shape, args.threads, args.iters)
            rows.append({"layer": f"{size}x{size}x{ch} s{stride}", "edgenas_us": round(e, 1), "ort_us": round(o, 1),
                         "ratio": round(e / o, 3)})
            print(f"{rows[-1]['layer']:18s} edgenas {e:8.1f} µs   onnxruntime {o:8.1f} µs   ratio {e / o:.2f}", flush=True)
    te, to = sum(r["edgenas_us"] for r in rows), sum(r["ort_us"] for r in rows)
    print(f"{'all layers':18s} edgenas {te:8.1f} µs   onnxruntime {to:8.1f} µs   ratio {te / to:.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"threads": args.threads, "loadavg": os.getloadavg()[0], "layers": rows,
                                         "edgenas_us": round(te, 1), "ort_us": round(to, 1)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
