#!/usr/bin/env python
"""What does a multi-target build cost beside one build per target?

Runs ``edgenas build --target A,B,...`` and then ``edgenas build --target A``, ``--target B``, ...
with the same options, each from its own copy of the same starting tuning store (``--tuning-from``,
default: empty, so every build profiles its op tables cold and none profits from another's), and
prints the multi-target build's wall time beside the sum of the single-target builds', with each
target's chosen model (int8 accuracy, latency) in both. Writes the table as JSON to
``OUT/bench_multi.json``. Every build's own output stays in ``OUT/`` (``multi/``, ``single-<T>/``).

    flock /tmp/edgenas-bench.lock python scripts/bench_multi.py --targets x86-avx2,x86-avx512-vnni \
        --out runs/bench_multi [--tracker 127.0.0.1:9190 --keys x86-avx2=local-cpu,rpi4=rpi4] \
        [-- BUILD OPTIONS...]

Options after ``--`` go to every build unchanged (e.g. ``--image-size 8 --rounds 1``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def run_build(args: list[str], tuning: Path, log: Path) -> float:
    """One ``edgenas build`` with its own tuning store; its wall time in seconds."""
    env = {**os.environ, "EDGENAS_TUNING_LOGS": str(tuning), "COLUMNS": "200"}
    t = time.time()
    with log.open("w") as f:
        proc = subprocess.run([sys.executable, "-m", "edgenas.cli", "build", *args], stdout=f, stderr=subprocess.STDOUT,
                              env=env)
    if proc.returncode != 0:
        sys.exit(f"build failed ({log}): {log.read_text()[-2000:]}")
    return time.time() - t


def fresh_store(src: Path | None, dst: Path) -> Path:
    if src is not None:
        shutil.copytree(src, dst)
    else:
        dst.mkdir(parents=True)
    return dst


def chosen(run: Path) -> dict:
    m = json.loads((run / "manifest.json").read_text())["data"]
    return {"arch": m["arch"], "int8_acc": m["accuracy"]["int8_tvm"], "latency_ms": (m["latency"] or {}).get("median_ms")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--tracker", default=None)
    ap.add_argument("--keys", default=None, help="TARGET=KEY pairs for the farm (default: each target's rpc_key)")
    ap.add_argument("--tuning-from", type=Path, default=None, help="tuning store every build starts from (copied)")
    ap.add_argument("build_options", nargs="*", help="after --: options for every build")
    a = ap.parse_args()
    targets = a.targets.split(",")
    keys = dict(p.split("=", 1) for p in a.keys.split(",")) if a.keys else {}
    if a.out.exists():
        sys.exit(f"{a.out} exists; choose a new --out")
    a.out.mkdir(parents=True)
    load = [os.getloadavg()[0]]

    farm = ["--tracker", a.tracker] if a.tracker else []
    multi_args = ["--target", ",".join(targets), "--out", str(a.out / "multi"), *farm, *a.build_options]
    if a.tracker and keys:
        multi_args += ["--key", ",".join(f"{t}={k}" for t, k in keys.items())]
    multi_s = run_build(multi_args, fresh_store(a.tuning_from, a.out / "tuning-multi"), a.out / "multi.log")
    load.append(os.getloadavg()[0])
    singles = {}
    for t in targets:
        key = ["--key", keys[t]] if a.tracker and t in keys else []
        args = ["--target", t, "--out", str(a.out / f"single-{t}"), *farm, *key, *a.build_options]
        singles[t] = run_build(args, fresh_store(a.tuning_from, a.out / f"tuning-{t}"), a.out / f"single-{t}.log")
        load.append(os.getloadavg()[0])

    total = sum(singles.values())
    seconds = json.loads((a.out / "multi" / "timing.json").read_text())
    rows = {t: {"multi": chosen(a.out / "multi" / t), "single": chosen(a.out / f"single-{t}")} for t in targets}
    print(f"multi-target build of {', '.join(targets)} vs one build per target "
          f"(1-minute load {', '.join(f'{x:.1f}' for x in load)} before / after each build)")
    print(f"{'build':<34} {'wall s':>8}")
    print(f"{'multi-target (' + ','.join(targets) + ')':<34} {multi_s:>8.0f}")
    for t, s in singles.items():
        print(f"{'single ' + t:<34} {s:>8.0f}")
    print(f"{'sum of the single builds':<34} {total:>8.0f}")
    print(f"multi / sum of singles: {multi_s / total:.2f}  (shared supernet {seconds.get('supernet', 0):.0f} s, "
          + ", ".join(f"{t} sub-run {seconds.get(f'target {t}', 0):.0f} s" for t in targets)
          + f", cross-target {seconds.get('cross', 0):.0f} s)")
    print(f"{'target':<18} {'build':<7} {'int8 acc %':>10} {'ms':>8}  architecture")
    for t, r in rows.items():
        for kind in ("multi", "single"):
            c = r[kind]
            print(f"{t:<18} {kind:<7} {c['int8_acc'] * 100:>10.2f} {c['latency_ms'] or float('nan'):>8.4f}  {c['arch']}")
    out = {"targets": targets, "multi_s": multi_s, "single_s": singles, "sum_single_s": total, "ratio": multi_s / total,
           "multi_stage_s": seconds, "chosen": rows, "load_1min": load, "build_options": a.build_options,
           "tracker": a.tracker, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    (a.out / "bench_multi.json").write_text(json.dumps(out, indent=1))
    print(f"wrote {a.out / 'bench_multi.json'}")


if __name__ == "__main__":
    main()
