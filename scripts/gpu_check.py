#!/usr/bin/env python
"""The one prepared check for a GPU machine: a bundle's CUDA library against its test vectors,
and a tiny search on ``--train-device cuda`` against the CPU (docs/distributed.md).

Two steps, because the GPU host has torch and onnxruntime but not TVM:

    # here (TVM installed): package a finished run for the GPU's target and gather what travels
    python scripts/gpu_check.py prepare --run runs/demo --target cuda-sm90 --out build/gpu_check
    # on the GPU host (the folder travels; it is well under 64 MiB):
    python scripts/gpu_check.py run build/gpu_check --out "$OUT"

``prepare`` writes the bundle (library with its sm_XX fatbin, stored inputs, onnxruntime int8
outputs, tolerance), the runtime-only runner (``edgenas/measure/cpp/run_cuda.cc``) and the
shared libraries it needs (``measure.cuda_run.runtime_files``). ``run`` executes the library
through the runner, compares with the stored outputs (the same rule as ``edgenas verify``) and
records the latency; then it runs the same tiny DARTS search (toy data, no data-set packages
needed) on ``cpu`` and ``cuda`` and records both times and the largest softmax(alpha)
difference. Everything goes to ``OUT/gpu_check.json`` and is printed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def prepare(a) -> None:
    from edgenas.bundle import package
    from edgenas.measure.cuda_run import build_runner, runtime_files
    from edgenas.target import get_target

    out = a.out.resolve()
    if out.exists():
        shutil.rmtree(out / "bundle", ignore_errors=True)
    (out / "lib").mkdir(parents=True, exist_ok=True)
    bundle = package(a.run, get_target(a.target), out / "bundle-tmp")
    shutil.move(str(bundle), out / "bundle")
    shutil.rmtree(out / "bundle-tmp", ignore_errors=True)
    shutil.copy2(build_runner(), out / "run_cuda")
    for f in runtime_files():
        shutil.copy2(f, out / "lib" / f.name)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{out}: {size / 2**20:.1f} MiB (bundle, runner, {len(runtime_files())} runtime libraries)")


def _toy_search(device: str) -> tuple[float, list]:
    import numpy as np

    from edgenas.compute import resolve_compute
    from edgenas.data import DataSplits
    from edgenas.latency.table import LatencyTable, op_key
    from edgenas.search.darts import SearchConfig, search
    from edgenas.space.arch import SpaceConfig, StageConfig

    rng = np.random.default_rng(0)
    n = 512
    y = rng.integers(0, 10, 4 * n)
    x = rng.standard_normal((4 * n, 1, 16, 16)).astype("float32") * 0.3
    x[np.arange(4 * n), 0, y, y] += 1.0
    part = lambda i: (x[i * n : (i + 1) * n], y[i * n : (i + 1) * n])  # noqa: E731
    data = DataSplits("toy", 10, 1, 16, part(0), part(1), part(2), part(3))
    space = SpaceConfig(image_size=16, num_classes=10)
    entries = {op_key(op, b, cin, cout, s, hw): 0.1 + 0.01 * len(op)
               for i, ((cin, cout, s), hw) in enumerate(zip(space.positions(), space.spatial_sizes()))
               for op, b in space.candidates(i)}
    table = LatencyTable("toy", entries, 0.05)
    cfg = SearchConfig(epochs=4, warmup=1, batch=64, subsample=n)
    t = time.time()
    res = search(space, data, table, 0.3 * len(space.positions()), cfg, seed=0, compute=resolve_compute(device))
    return time.time() - t, [v for p in res.alphas for v in p]


def run(a) -> None:
    import numpy as np

    root = a.folder.resolve()
    result: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    try:
        result["gpu"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                                       capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        result["gpu"] = f"nvidia-smi: {e}"
    manifest = json.loads((root / "bundle" / "manifest.json").read_text())["data"]
    ver = manifest["verification"]
    x = np.load(root / "bundle" / ver["inputs"])
    expected = np.load(root / "bundle" / ver["outputs"])
    sys.path.insert(0, str(REPO))
    from edgenas.measure.cuda_run import run_cuda_library

    try:
        out, lat = run_cuda_library(root / "bundle" / manifest["library"], x, repeat=200, runner=root / "run_cuda",
                                    lib_dir=root / "lib")
        err = float(np.abs(out.reshape(expected.shape) - expected).max())
        result["library"] = {"target": manifest["target"], "n": len(x), "max_abs_err": err, "atol": ver["atol"],
                             "top1_agreement": float((out.reshape(expected.shape).argmax(1) == expected.argmax(1)).mean()),
                             "within_atol": err <= ver["atol"], "latency": lat}
    except Exception as e:  # noqa: BLE001 - the report says what failed; the search check still runs
        result["library"] = {"error": f"{type(e).__name__}: {e}"}
    try:
        import torch

        torch.set_num_threads(max(1, torch.get_num_threads()))
        cpu_s, cpu_alpha = _toy_search("cpu")
        _toy_search("cuda")                     # warm-up: CUDA context and kernels
        cuda_s, cuda_alpha = _toy_search("cuda")
        result["search"] = {"cpu_s": round(cpu_s, 2), "cuda_s": round(cuda_s, 2), "speedup": round(cpu_s / cuda_s, 2),
                            "max_alpha_diff": float(np.abs(np.subtract(cpu_alpha, cuda_alpha)).max()),
                            "cpu_threads": torch.get_num_threads(), "device": torch.cuda.get_device_name(0)}
    except Exception as e:  # noqa: BLE001
        result["search"] = {"error": f"{type(e).__name__}: {e}"}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "gpu_check.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--run", type=Path, required=True, help="a finished run directory")
    p.add_argument("--target", default="cuda-sm90")
    p.add_argument("--out", type=Path, default=Path("build/gpu_check"))
    r = sub.add_parser("run")
    r.add_argument("folder", type=Path)
    r.add_argument("--out", type=Path, default=Path("."))
    a = ap.parse_args()
    prepare(a) if a.cmd == "prepare" else run(a)


if __name__ == "__main__":
    main()
