#!/usr/bin/env python
"""Does the measurement protocol's repeat count shift the median? (It should not.)

Measures one library with ``measure_here`` at several ``--repeat`` values (the protocol's minimum
sample count, what ``edgenas measure --repeat`` sets), round-robin for ``--rounds`` rounds so a
change of load hits every repeat value alike, and prints per repeat value the median of the
medians, and the spread of all medians across repeat values: (max - min) / min. Each measurement
records the machine load (``edgenas.measure.context``), shown beside the numbers.

    flock /tmp/edgenas-bench.lock python scripts/bench_repeat.py RUN_DIR [--repeats 30,300,3000] \
        [--rounds 3] [--out runs/bench_repeat.json]

RUN_DIR is a finished run (its ``model_<target>.so`` and ``arch.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from edgenas import records
from edgenas.build.manifest import Manifest
from edgenas.measure.protocol import Protocol, measure_here
from edgenas.space.arch import Arch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--repeats", default="30,300,3000")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    target = records.load(args.run / "manifest.json", Manifest).target
    arch = records.load(args.run / "arch.json", Arch)
    lib = args.run / f"model_{target}.so"
    shape = (1, arch.in_channels, arch.image_size, arch.image_size)
    repeats = [int(r) for r in args.repeats.split(",")]
    load_before = os.getloadavg()[0]
    rows: dict[int, list[dict]] = {r: [] for r in repeats}
    for _ in range(args.rounds):
        for r in repeats:
            s = measure_here(lib, shape, Protocol(), min_samples=r, target=target).stats
            rows[r].append({"median_ms": s.median_ms, "n": s.n, "number": s.number,
                            "load_1min": s.context.load_1min, "other_cpu_share": s.context.other_cpu_share})
    medians = [m["median_ms"] for r in repeats for m in rows[r]]
    spread = (max(medians) - min(medians)) / min(medians)
    print(f"{lib} ({target}, input {shape}); load {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    print(f"{'repeat':>7} {'n':>6} {'runs/sample':>11} {'median of medians (ms)':>23} {'others CPU':>10}")
    for r in repeats:
        ms = rows[r]
        print(f"{r:>7} {ms[0]['n']:>6} {ms[0]['number']:>11} {statistics.median(m['median_ms'] for m in ms):>23.4f} "
              f"{statistics.mean(m['other_cpu_share'] for m in ms):>10.0%}")
    print(f"spread of all {len(medians)} medians across repeat values: {spread:.1%}")
    out = args.out or args.run / "bench_repeat.json"
    out.write_text(json.dumps({"library": str(lib), "repeats": repeats, "rounds": args.rounds, "rows": rows,
                               "spread": spread, "load_before": load_before, "load_after": os.getloadavg()[0],
                               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}, indent=2) + "\n")
    print(f"written: {out}")


if __name__ == "__main__":
    main()
