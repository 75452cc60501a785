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

Options after ``--`` go to every build unchanged (e.g. ``--image-size 8 --rounds 1``). With
``--resume`` an interrupted bench continues in ``OUT/``: finished builds are kept, an interrupted
one is resumed (``edgenas build --resume``, its own tuning store kept) and its wall time is the
sum of its attempts (``OUT/walls.json``).
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


def run_build(name: str, args: list[str], out: Path, src: Path | None) -> float:
    """One ``edgenas build`` with its own tuning store ``OUT/tuning-NAME`` (a fresh copy of
    ``src``, or the one an interrupted attempt left); its wall time in seconds, summed over the
    attempts ``OUT/walls.json`` records."""
    walls_file = out / "walls.json"
    walls = json.loads(walls_file.read_text()) if walls_file.exists() else {}
    rec = walls.setdefault(name, {"s": 0.0, "done": False})
    if rec["done"]:
        return rec["s"]
    tuning = out / f"tuning-{name}"
    if not tuning.exists():
        shutil.copytree(src, tuning) if src is not None else tuning.mkdir(parents=True)
    elif "--resume" not in args:
        args = [*args, "--resume"]
    env = {**os.environ, "EDGENAS_TUNING_LOGS": str(tuning), "COLUMNS": "200"}
    log = out / f"{name}.log"
    t = time.time()
    with log.open("a") as f:
        proc = subprocess.run([sys.executable, "-m", "edgenas.cli", "build", *args], stdout=f, stderr=subprocess.STDOUT,
                              env=env)
    rec["s"], rec["done"] = rec["s"] + time.time() - t, proc.returncode == 0
    walls_file.write_text(json.dumps(walls, indent=1))
    if proc.returncode != 0:
        sys.exit(f"build failed ({log}; rerun with --resume): {log.read_text()[-2000:]}")
    return rec["s"]


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
    ap.add_argument("--resume", action="store_true", help="continue an interrupted bench in --out")
    ap.add_argument("build_options", nargs="*", help="after --: options for every build")
    a = ap.parse_args()
    targets = a.targets.split(",")
    keys = dict(p.split("=", 1) for p in a.keys.split(",")) if a.keys else {}
    if a.out.exists() and not a.resume:
        sys.exit(f"{a.out} exists; choose a new --out (or --resume)")
    a.out.mkdir(parents=True, exist_ok=True)
    load = [os.getloadavg()[0]]

    farm = ["--tracker", a.tracker] if a.tracker else []
    multi_args = ["--target", ",".join(targets), "--out", str(a.out / "multi"), *farm, *a.build_options]
    if a.tracker and keys:
        multi_args += ["--key", ",".join(f"{t}={k}" for t, k in keys.items())]
    multi_s = run_build("multi", multi_args, a.out, a.tuning_from)
    load.append(os.getloadavg()[0])
    singles = {}
    for t in targets:
        key = ["--key", keys[t]] if a.tracker and t in keys else []
        args = ["--target", t, "--out", str(a.out / f"single-{t}"), *farm, *key, *a.build_options]
        singles[t] = run_build(f"single-{t}", args, a.out, a.tuning_from)
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
