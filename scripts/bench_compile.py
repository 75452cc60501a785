#!/usr/bin/env python
"""Benchmark edgenas' compile stage against PyTorch and onnxruntime on this machine (x86-avx2).

Why: the claim that matters is "the INT8 library edgenas builds is fast on the target"; the
honest reference is onnxruntime's INT8 kernels measured in the same run, at the same thread
count (docs/architecture.md §5). For each model and thread count this measures the median latency of
PyTorch eager fp32, ORT fp32, ORT int8 (QDQ and QOperator, ``quantize_static``), TVM fp32
untuned / tuned, and edgenas int8 untuned / tuned, and prints each as a ratio to ORT int8 QDQ.

Models (``--models``): a small CNN at 32x32, MobileNetV2-0.35 at 96x96, MobileNetV2-1.0 at
224x224 and a ResNet-18 at 96x96 (dense 3x3 convs); ``--untuned-only`` skips the tuned builds of
the named ones, and ``--tune`` names the builds that are tuned (``fp32``, ``avx2``, ``vnni``: all by
default; a 640-trial tuning of each of three builds of three models is hours on 2 cores);
``--run DIR`` adds a searched model (``DIR/model_fp32.onnx``, ``DIR/model_int8.onnx``).
The JSON records the CPU, the ISA onnxruntime's MLAS uses on it, the load average before and after,
and per build the trials, compile and tuning time and the int8 kernel classes.
Tuning goes into ``--tuning-dir`` (default ``build/bench/tuning``, reused by later runs, so a
second run reports 0 new trials). Each thread count is measured in a fresh subprocess because
TVM reads ``TVM_NUM_THREADS`` once per process (and defaults to cores/2 on x86).

    python scripts/bench_compile.py --trials 32 --threads 1,2 --json build/bench/bench.json

Where the time goes inside the libraries it builds: ``scripts/profile_int8.py WORK/<model>/*.so``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ENGINES = ["torch fp32", "ORT fp32", "ORT int8 QDQ", "ORT int8 QOp", "TVM fp32 untuned", "TVM fp32 tuned",
           "edgenas int8 untuned", "edgenas int8 tuned", "edgenas int8 VNNI untuned", "edgenas int8 VNNI tuned"]
REFERENCE = "ORT int8 QDQ"


# ---------------------------------------------------------------- models (deterministic, by name)
def small_cnn():
    from torch import nn

    def cbr(i, o, s):
        return [nn.Conv2d(i, o, 3, s, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]

    return nn.Sequential(*cbr(3, 16, 1), *cbr(16, 32, 2), *cbr(32, 64, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(64, 10))


def mobilenet_v2(width: float = 0.35, classes: int = 1000):
    """MobileNetV2 (Sandler et al. 2018) with channels rounded to multiples of 8, as torchvision."""
    import torch
    from torch import nn

    def div8(c):
        return max(8, int(c * width + 4) // 8 * 8)

    def cbr(i, o, k=3, s=1, g=1, act=True):
        return [nn.Conv2d(i, o, k, s, k // 2, groups=g, bias=False), nn.BatchNorm2d(o)] + ([nn.ReLU6()] if act else [])

    class Inverted(nn.Module):
        def __init__(self, i, o, s, t):
            super().__init__()
            h = i * t
            self.res = s == 1 and i == o
            self.body = nn.Sequential(*(cbr(i, h, 1) if t != 1 else []), *cbr(h, h, 3, s, h), *cbr(h, o, 1, act=False))

        def forward(self, x):
            return x + self.body(x) if self.res else self.body(x)

    layers, c = cbr(3, div8(32), 3, 2), div8(32)
    for t, ch, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
        for k in range(n):
            layers.append(Inverted(c, div8(ch), s if k == 0 else 1, t))
            c = div8(ch)
    layers += cbr(c, 1280, 1) + [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, classes)]
    torch.manual_seed(0)
    return nn.Sequential(*layers)


def resnet18(classes: int = 1000):
    """ResNet-18 (He et al. 2016): 7x7 stem, max pool, 4 stages of two 3x3 BasicBlocks (64-512 ch)."""
    from torch import nn

    class Basic(nn.Module):
        def __init__(self, i, o, s):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(i, o, 3, s, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(),
                                      nn.Conv2d(o, o, 3, 1, 1, bias=False), nn.BatchNorm2d(o))
            self.skip = (nn.Sequential(nn.Conv2d(i, o, 1, s, bias=False), nn.BatchNorm2d(o))
                         if s != 1 or i != o else nn.Identity())
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.relu(self.body(x) + self.skip(x))

    layers, c = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)], 64
    for o, s in [(64, 1), (128, 2), (256, 2), (512, 2)]:
        layers += [Basic(c, o, s), Basic(o, o, 1)]
        c = o
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, classes))


FIXED = {"cnn-32": (small_cnn, 32), "mnv2-0.35-96": (mobilenet_v2, 96), "mnv2-0.35-224": (mobilenet_v2, 224),
         "mnv2-1.0-224": (lambda: mobilenet_v2(1.0), 224), "resnet18-96": (resnet18, 96)}
DEFAULT_MODELS = "cnn-32,mnv2-0.35-96,mnv2-1.0-224,resnet18-96"


def torch_model(name):
    import torch

    torch.manual_seed(0)
    return FIXED[name][0]().eval()


# ---------------------------------------------------------------- ONNX preparation
def _quantize(fp32: Path, out: Path, fmt: str, shape, weight_bits: int) -> Path:
    from edgenas.quantize.ort_static import quantize_static_onnx

    return quantize_static_onnx(fp32, out, shape, fmt, samples=16, reduce_range=weight_bits < 8)


def prepare(name: str, work: Path, run_dir: Path | None, weight_bits: int = 8) -> dict:
    """fp32 / QDQ / QOperator ONNX files of one model (and whether PyTorch can run it), the
    int8 files with ``weight_bits``-bit weights (7: onnxruntime's ``reduce_range``, [-64, 64]).
    A run directory's ``model_int8.onnx`` is taken as the build exported it."""
    import onnx
    import torch

    d = work / name
    d.mkdir(parents=True, exist_ok=True)
    if run_dir is None:
        shape = (1, 3, FIXED[name][1], FIXED[name][1])
        fp32 = d / "fp32.onnx"
        if not fp32.exists():
            torch.onnx.export(torch_model(name), (torch.randn(*shape),), str(fp32), opset_version=17, dynamo=False,
                              input_names=["input"], output_names=["logits"])
    else:
        fp32 = run_dir / "model_fp32.onnx"
        dims = onnx.load(str(fp32)).graph.input[0].type.tensor_type.shape.dim
        shape = tuple(x.dim_value for x in dims)
    tag = "" if weight_bits == 8 else f"-w{weight_bits}"
    qdq = run_dir / "model_int8.onnx" if run_dir else d / f"qdq{tag}.onnx"
    if not qdq.exists():
        _quantize(fp32, qdq, "QDQ", shape, weight_bits)
    qop = d / f"qop{tag}.onnx"
    if not qop.exists():
        _quantize(fp32, qop, "QOperator", shape, weight_bits)
    return {"name": name, "shape": list(shape), "fp32": str(fp32), "qdq": str(qdq), "qop": str(qop),
            "torch": run_dir is None, "libs": {}}


def vnni_here() -> bool:
    from edgenas.target import get_target

    return get_target("x86-avx512-vnni").measurable_locally


def mlas_isa() -> str:
    """The int8 kernel family onnxruntime's MLAS dispatches to on this CPU. MLAS chooses by CPUID
    (``core/mlas/lib/platform.cpp``: AVX-512 VNNI, else AVX-VNNI, else AVX-512 core, else AVX2);
    this applies the same order to ``/proc/cpuinfo``'s flags."""
    from edgenas.target import host_cpu_flags

    f = host_cpu_flags()
    if {"avx512bw", "avx512_vnni"} <= f:
        return "AVX-512 VNNI (vpdpbusd, 512-bit)"
    if "avx_vnni" in f:
        return "AVX-VNNI (vpdpbusd, 256-bit)"
    if "avx512bw" in f:
        return "AVX-512 core (vpmaddubsw)"
    return "AVX2 (vpmaddubsw)" if "avx2" in f else "SSE"


def vnni_spec():
    """``x86-avx512-vnni``, measured on this host (its ISA is here: ``[runner] local_if_cpu_has``),
    with this host's core count."""
    import dataclasses

    from edgenas.target import get_target

    spec = get_target("x86-avx512-vnni")
    return dataclasses.replace(spec, tvm_target={**spec.tvm_target, "num-cores": os.cpu_count()})


BUILDS = {"fp32": "TVM fp32", "avx2": "edgenas int8", "vnni": "edgenas int8 VNNI"}  # --tune name -> engine label


def compile_all(m: dict, work: Path, tuning_dir: Path, trials: int, log, vnni: bool,
                tune: frozenset[str] = frozenset(BUILDS), check_tuned: bool = True) -> dict:
    """The TVM libraries of a model; the builds named in ``tune`` are also tuned, and record
    trials and tuning time (empty: only the untuned builds). A tuned library is kept only where it
    is not slower than the default schedules (``check_tuned``: ``edgenas compile``'s default)."""
    from edgenas.compile import compile_onnx
    from edgenas.measure.tuned_check import checker
    from edgenas.target import get_target

    avx2, info = get_target("x86-avx2"), {}
    builds = [("TVM fp32", m["fp32"], False, avx2), ("edgenas int8", m["qdq"], True, avx2)]
    if vnni:
        builds.append(("edgenas int8 VNNI", m["qdq"], True, vnni_spec()))
    for label, src, int8, spec in builds:
        tuned_too = label in {BUILDS[b] for b in tune}
        for tuned in (False, True) if tuned_too else (False,):
            engine = f"{label} {'tuned' if tuned else 'untuned'}"
            lib = work / m["name"] / f"{engine.replace(' ', '_')}.so"
            db = (tuning_dir / spec.name) if tuned else work / "no-tuning"
            r = compile_onnx(src, spec, lib, int8=int8, trials=trials if tuned else 0, tuning_dir=db,
                             progress=lambda s, e=engine: log(f"  {m['name']} {e}: {s}"))
            entry = {"trials": r.trials, "db_records": r.db_records, "int8_ops": r.int8_ops, "kernels": r.kernels,
                     "fallbacks": list(r.fallbacks), "seconds": round(r.seconds, 2)}
            if tuned:  # compile again from the DB alone: the tuning time is the difference
                again = compile_onnx(src, spec, lib, int8=int8, trials=0, tuning_dir=db)
                entry.update(compile_s=round(again.seconds, 2), tuning_s=round(r.seconds - again.seconds, 1))
            if tuned and check_tuned:  # the library measured: checked against the defaults, as `edgenas compile` does
                final = compile_onnx(src, spec, lib, int8=int8, trials=0, tuning_dir=db, keep_tuned=checker(m["shape"], spec),
                                     progress=lambda s, e=engine: log(f"  {m['name']} {e}: {s}"))
                entry.update(records_kept=final.tuned, tuned_check=final.tuned_check)
            m["libs"][engine] = str(lib)
            info[engine] = entry
    return info


# ---------------------------------------------------------------- measurement (one process per thread count)
def _blocked_ms(fns: dict, rounds: int = 5, samples: int = 10, min_sample_s: float = 0.005) -> dict:
    """Median/p90 per engine over ``rounds`` rounds; in a round each engine runs ``samples`` timed
    samples in one block, with a pause between engines, and the engine order rotates by one each round.

    Blocks, not round-robin per call: with several runtimes in one process, each keeps its own
    thread pool, and TVM's and onnxruntime's workers spin for a while after every call.
    Interleaving engines at 2 threads on 2 cores made them fight (TVM fp32 tuned read 7.6 ms
    interleaved vs 1.1 ms alone); in blocks, each engine's pool has the cores to itself and the
    others' workers have parked. Rounds, because this host's speed drifts over tens of seconds
    (onnxruntime's own 2-thread time moved 46 % between two runs): every engine then samples
    every stretch of the run, and the ratios compare like with like. ``spread`` is the
    (max - min) / median of the per-round medians, the run's own noise figure."""
    names = list(fns)
    number = {}
    for e, fn in fns.items():
        for _ in range(5):
            fn()
        t0 = time.perf_counter()
        fn()
        number[e] = max(1, int(min_sample_s / max(time.perf_counter() - t0, 1e-7)))
    times = {e: [] for e in names}
    per_round = {e: [] for e in names}
    for r in range(rounds):
        for e in names[r % len(names):] + names[:r % len(names)]:
            fn = fns[e]
            time.sleep(0.5)  # let the previous engine's spinning workers go to sleep
            fn()
            block = []
            for _ in range(samples):
                t0 = time.perf_counter()
                for _ in range(number[e]):
                    fn()
                block.append((time.perf_counter() - t0) / number[e] * 1e3)
            times[e] += block
            per_round[e].append(float(np.median(block)))
    out = {}
    for e in names:
        med = float(np.median(times[e]))
        out[e] = {"median": med, "p90": float(np.percentile(times[e], 90)), "n": len(times[e]) * number[e],
                  "spread": (max(per_round[e]) - min(per_round[e])) / med}
    return out


def measure_worker(models: list[dict], threads: int, rounds: int = 5) -> dict:
    import onnxruntime as ort
    import torch
    import tvm
    from tvm import relax

    torch.set_num_threads(threads)
    out = {}
    for m in models:
        x = np.random.default_rng(0).standard_normal(m["shape"]).astype("float32")
        fns = {}
        if m["torch"]:
            model, tx = torch_model(m["name"]), torch.from_numpy(x)
            fns["torch fp32"] = lambda model=model, tx=tx: model(tx)
        for engine, key in [("ORT fp32", "fp32"), ("ORT int8 QDQ", "qdq"), ("ORT int8 QOp", "qop")]:
            so = ort.SessionOptions()
            so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = threads, 1, 3
            sess = ort.InferenceSession(m[key], so, providers=["CPUExecutionProvider"])
            fns[engine] = lambda s=sess, n=sess.get_inputs()[0].name: s.run(None, {n: x})
        for engine, lib in m["libs"].items():
            vm = relax.VirtualMachine(tvm.runtime.load_module(lib), tvm.cpu())
            fns[engine] = lambda vm=vm, tx=tvm.runtime.tensor(x): vm["main"](tx)
        with torch.inference_mode():
            out[m["name"]] = _blocked_ms(fns, rounds=rounds)
    return out


def measure(models: list[dict], threads: int, rounds: int = 5) -> dict:
    env = dict(os.environ, TVM_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    r = subprocess.run([sys.executable, __file__, "--measure-worker", str(threads), "--rounds", str(rounds)],
                       input=json.dumps(models),
                       capture_output=True, text=True, env=env, check=False)
    if r.returncode != 0:
        raise SystemExit(f"measurement worker failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- report
def report(results: dict, threads: list[int]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"median latency (ms) and ratio to {REFERENCE} (lower is better); {results['cpu']}, "
                        f"MLAS int8: {results['mlas_isa']}, {results.get('weight_bits', 8)}-bit weights, load {results['loadavg_start']} -> {results.get('loadavg_measure', '?')} (measuring) -> {results['loadavg_end']}")
    table.add_column("model", no_wrap=True)
    table.add_column("engine", no_wrap=True)
    for t in threads:
        table.add_column(f"{t} thr ms", justify="right")
        table.add_column(f"{t} thr ×ref", justify="right")
    for name, res in results["models"].items():
        for engine in ENGINES:
            row = [name, engine]
            for t in threads:
                lat = res["latency_ms"][str(t)]
                ms = lat.get(engine, {}).get("median")
                ref = lat[REFERENCE]["median"]
                row += [f"{ms:.3f}" if ms else "-", f"{ms / ref:.2f}" if ms else "-"]
            table.add_row(*row)
        table.add_section()
    Console().print(table)
    for name, res in results["models"].items():
        for t in threads:
            lat = res["latency_ms"][str(t)]
            noisy = {e: v["spread"] for e, v in lat.items() if v.get("spread", 0) > 0.1}
            if noisy:
                print(f"{name} at {t} thread(s): per-round medians spread over "
                      + ", ".join(f"{e} {v:.0%}" for e, v in noisy.items()) + " (read those ratios loosely)")


def markdown(results: dict) -> str:
    """The run as Markdown: one row per model and thread count, the engines that ran as columns
    (median ms, ratio to the reference in brackets), then the spread of the reference and of the
    fastest edgenas build, and one row per tuned build with its trials and times."""
    engines = [e for e in ENGINES if e != "torch fp32" and any(
        e in lat for r in results["models"].values() for lat in r["latency_ms"].values())]
    head = ["model", "threads", *engines, "spread ORT int8 / edgenas best"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in results["models"].items():
        for t, lat in r["latency_ms"].items():
            ref = lat[REFERENCE]["median"]
            cells = []
            for e in engines:
                v = lat.get(e)
                cells.append("–" if v is None else f"{v['median']:.4g}" if e == REFERENCE
                             else f"{v['median']:.4g} ({v['median'] / ref:.2f})")
            best = min((e for e in lat if e.startswith("edgenas")), key=lambda e: lat[e]["median"])
            rows.append(f"| {name} | {t} | " + " | ".join(cells)
                        + f" | {lat[REFERENCE]['spread']:.0%} / {lat[best]['spread']:.0%} ({best}) |")
    rows += ["", "| model | build | trials | tuning s | compile s | kernels | float fallbacks |", "|---|---|---|---|---|---|---|"]
    for name, r in results["models"].items():
        for e, c in r["compile"].items():
            kernels = ", ".join(f"{k} ×{n}" for k, n in c["kernels"].items()) or "–"
            rows.append(f"| {name} | {e} | {c['trials']} | {c.get('tuning_s', '–')} | {c.get('compile_s', c['seconds'])} "
                        f"| {kernels} | {len(c['fallbacks'])} |")
    return "\n".join(rows) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=32, help="MetaSchedule trials per tuned model and precision")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--models", default=DEFAULT_MODELS, help=f"comma-separated, of {', '.join(FIXED)}")
    ap.add_argument("--untuned-only", default="", help="models measured untuned only (no tuned builds), comma-separated")
    ap.add_argument("--tune", default=",".join(BUILDS),
                    help=f"builds that are tuned too, comma-separated, of {', '.join(BUILDS)} (default: all)")
    ap.add_argument("--rounds", type=int, default=5, help="measurement rounds per thread count (engine order rotates "
                    "each round; more rounds, steadier medians on a noisy host)")
    ap.add_argument("--no-check-tuned", action="store_true",
                    help="measure the tuned library as built, even where it is slower than the default schedules "
                         "(by default it is kept only where it is not, as edgenas compile does: docs/tuning.md)")
    ap.add_argument("--no-vnni", action="store_true",
                    help="skip the x86-avx512-vnni build (on by default when this CPU has AVX-512 VNNI)")
    ap.add_argument("--run", type=Path, action="append", default=[], help="a run directory with model_fp32/int8.onnx")
    ap.add_argument("--weight-bits", type=int, choices=(7, 8), default=None,
                    help="weight width of the quantize_static models, for every engine (default: the x86-avx2 "
                         "target's [int8] weight_bits, 7: the width edgenas trains for AVX2, where pmaddubsw is exact; "
                         "8 measures a bring-your-own 8-bit model, which edgenas runs with pmaddwd on AVX2)")
    ap.add_argument("--work", type=Path, default=REPO / "build" / "bench")
    ap.add_argument("--tuning-dir", type=Path, default=None, help="default: WORK/tuning (reused across runs)")
    ap.add_argument("--json", type=Path, default=None, help="default: WORK/bench_compile.json")
    ap.add_argument("--measure-lock", type=Path, default=None,
                    help="hold an exclusive flock on this file while measuring (not while compiling and tuning), "
                         "so other heavy jobs that take the same lock wait for the timing phase")
    ap.add_argument("--markdown", type=Path, default=None,
                    help="also write the table as Markdown (median ms, ratio to onnxruntime int8 QDQ, the spread)")
    ap.add_argument("--from-json", type=Path, default=None,
                    help="print (and with --markdown write) the tables of an earlier run's JSON; measures nothing")
    ap.add_argument("--measure-worker", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.measure_worker is not None:
        print(json.dumps(measure_worker(json.loads(sys.stdin.read()), args.measure_worker, args.rounds)))
        return
    if args.from_json is not None:
        results = json.loads(args.from_json.read_text())
        report(results, results["threads"])
        if args.markdown:
            args.markdown.write_text(markdown(results))
            print(f"wrote {args.markdown}")
        return
    warnings.simplefilter("ignore")
    threads = [int(t) for t in args.threads.split(",")]
    tuning_dir = args.tuning_dir or args.work / "tuning"
    names = [n for n in args.models.split(",") if n]
    unknown = [n for n in names if n not in FIXED]
    if unknown:
        raise SystemExit(f"unknown model(s) {', '.join(unknown)}; expected some of {', '.join(FIXED)}")
    untuned_only = set(filter(None, args.untuned_only.split(",")))
    tune_builds = frozenset(filter(None, args.tune.split(",")))
    if tune_builds - set(BUILDS):
        raise SystemExit(f"unknown --tune build(s) {', '.join(sorted(tune_builds - set(BUILDS)))}; expected some of {', '.join(BUILDS)}")

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    from edgenas.target import get_target

    weight_bits = args.weight_bits or get_target("x86-avx2").int8_weight_bits
    t_start = time.time()
    models = [prepare(n, args.work, None, weight_bits) for n in names]
    models += [prepare(f"run:{d.name}", args.work, d) for d in args.run]
    results = {"cpu": _cpu(), "mlas_isa": mlas_isa(), "trials": args.trials, "threads": threads, "rounds": args.rounds, "tuned_builds": sorted(tune_builds),
               "weight_bits": weight_bits,
               "tuning_dir": str(tuning_dir), "loadavg_start": _loadavg(), "models": {}}
    for m in models:
        log(f"compiling {m['name']}")
        tuned = frozenset() if m["name"] in untuned_only else tune_builds
        results["models"][m["name"]] = {"input_shape": m["shape"], "latency_ms": {}, "compile": compile_all(
            m, args.work, tuning_dir, args.trials, log, vnni=vnni_here() and not args.no_vnni, tune=tuned,
            check_tuned=not args.no_check_tuned)}
    with _exclusive(args.measure_lock, log):
        results["loadavg_measure"] = _loadavg()
        for t in threads:
            log(f"measuring at {t} thread(s)")
            for name, lat in measure(models, t, args.rounds).items():
                results["models"][name]["latency_ms"][str(t)] = lat
    results["wall_s"] = round(time.time() - t_start, 1)
    results["loadavg_end"] = _loadavg()
    out = args.json or args.work / "bench_compile.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    report(results, threads)
    if args.markdown:
        args.markdown.write_text(markdown(results))
    for name, r in results["models"].items():
        for e, c in r["compile"].items():
            print(f"{name} {e}: compile {c.get('compile_s', c['seconds'])} s, {c['trials']} new trials"
                  + (f" ({c['tuning_s']} s tuning)" if "tuning_s" in c else "") + f", kernels {c['kernels']}, "
                  f"{len(c['fallbacks'])} float fallbacks" + (f"; {c['tuned_check']}" if c.get("tuned_check") else ""))
    print(f"wrote {out} ({results['wall_s']} s)")


@contextlib.contextmanager
def _exclusive(path: Path | None, log):
    """An exclusive lock on ``path`` for the timing phase (nothing when ``path`` is None). filelock
    flocks the file itself, so a job run as ``flock PATH cmd`` waits for it and it for the job."""
    if path is None:
        yield
        return
    from filelock import FileLock

    log(f"waiting for {path}")
    with FileLock(str(path)):
        yield


def _loadavg() -> str:
    return Path("/proc/loadavg").read_text().split(" ")[0]


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    main()
