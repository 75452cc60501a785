#!/usr/bin/env python
"""Latency-predictor quality on x86, measured through a loopback device farm.

1. start a loopback farm (``scripts/farm``, 2 servers) unless --tracker/--key name one;
2. profile the INT8 op table of the default space through the farm;
3. measure N random architectures of that space whole (compiled INT8, measured through the farm,
   each library measured twice to show the measurement noise floor);
4. fit the predictor as the build's feedback does: round 1 sees the first --per-round archs,
   round 2 the first 2 x --per-round; every other arch is held out. Report, on the held-out archs,
   the table sum alone, the plain scale fit (``measured ~ a * sum + b``, the previous predictor)
   and the feature predictor: share within ±10 %, mean abs % error, Kendall tau.

Compiles use an empty temporary tuning root unless --tuning-logs is given (nothing is written into
the repository). Progress is checkpointed in --out, so an interrupted run continues with --resume.

    scripts/bench_latency.py --archs 30 --per-round 6 --out runs/bench_latency.json
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def start_farm(directory: Path) -> tuple[str, str, dict]:
    import socket

    with socket.socket() as s:   # a free port for the tracker (servers scan above it)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "EDGENAS_FARM_DIR": str(directory)}
    subprocess.run([str(REPO / "scripts" / "farm"), "start", "2", "--port", str(port), "--key", "bench"], env=env, check=True)
    return f"127.0.0.1:{port}", "bench", env


def scale_fit(sums, measured):
    """The previous predictor: least squares ``a * sum + b`` (a ratio for one point)."""
    import numpy as np

    x, y = np.asarray(sums, float), np.asarray(measured, float)
    if len(x) < 2:
        return float(y.mean() / x.mean()), 0.0
    a, b = np.polyfit(x, y, 1)
    return (float(a), float(b)) if a > 0 else (float(y.mean() / x.mean()), 0.0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tracker")
    ap.add_argument("--key")
    ap.add_argument("--archs", type=int, default=30)
    ap.add_argument("--per-round", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tuning-logs")
    ap.add_argument("--out", default=str(REPO / "runs" / "bench_latency.json"))
    ap.add_argument("--resume", action="store_true")
    a = ap.parse_args()
    if a.archs < 2 * a.per_round + 3:
        ap.error("--archs must leave at least 3 held-out archs after two rounds")
    own_logs = None if a.tuning_logs or "EDGENAS_TUNING_LOGS" in os.environ else tempfile.mkdtemp(prefix="edgenas-bench-tl-")
    os.environ.setdefault("EDGENAS_TUNING_LOGS", a.tuning_logs or own_logs)

    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from edgenas import fsio, records
    from edgenas.latency.predictor import fit_arch_predictor, quality
    from edgenas.latency.profile import measure_arch, profile_space
    from edgenas.latency.table import LatencyTable
    from edgenas.measure.rpc import Farm
    from edgenas.quantize.recipe import get_recipe
    from edgenas.space.arch import Arch, SpaceConfig, arch_from_choices
    from edgenas.target import get_target

    con, out = Console(), Path(a.out)
    state = fsio.read_json(out) if a.resume and out.exists() else {}
    farm_dir = None
    if a.tracker and a.key:
        tracker, key = a.tracker, a.key
    else:
        farm_dir = Path(tempfile.mkdtemp(prefix="edgenas-bench-farm-"))
        tracker, key, farm_env = start_farm(farm_dir)
    try:
        farm = Farm(tracker, key, timeout_s=120, target="x86-avx2")
        target, recipe, space = get_target("x86-avx2"), get_recipe("int8-per-channel"), SpaceConfig()
        status = farm.check()
        con.print(f"farm {tracker} key {key}: {status.key(key).servers} servers")

        def median(lib, shape):
            return farm.measure(lib, shape, repeat=15).median_ms

        t0 = time.time()
        if "table" in state:
            table = records.from_dict(state["table"], LatencyTable)
        else:
            table = profile_space(space, LatencyTable(target.name), recipe, target, median,
                                  progress=lambda i, n, k: con.print(f"  op {i + 1}/{n} {k}"))
            state["table"] = records.to_dict(table)
            state["profile_s"] = round(time.time() - t0, 1)
            fsio.write_json(out, state)

        rng, archs = np.random.default_rng(a.seed), []
        while len(archs) < a.archs:
            arch = arch_from_choices(space, [space.candidates(i)[rng.integers(len(space.candidates(i)))]
                                             for i in range(len(space.positions()))])
            if arch not in archs:
                archs.append(arch)
        rows = state.setdefault("archs", [])
        for arch in archs[len(rows):]:
            twice = []

            def measure_twice(lib, shape, twice=twice):
                twice[:] = [farm.measure(lib, shape, repeat=15).median_ms for _ in range(2)]
                return twice[0]

            t = time.time()
            measure_arch(arch, recipe, target, measure_twice)
            rows.append({"arch": str(arch), "measured_ms": twice[0], "repeat_ms": twice[1], "table_ms": table.arch_sum(arch),
                         "seconds": round(time.time() - t, 1)})
            con.print(f"  arch {len(rows)}/{a.archs}: {twice[0]:.4f} ms (again {twice[1]:.4f}), table sum {table.arch_sum(arch):.4f} ms")
            fsio.write_json(out, state)

        A = [Arch.parse(r["arch"]) for r in rows]
        y = np.array([r["measured_ms"] for r in rows])
        T = np.array([table.arch_sum(x) for x in A])
        held = slice(2 * a.per_round, None)
        noise = quality([r["repeat_ms"] for r in rows], y)
        results = [{"model": "table sum (before feedback)", "round": 0, **quality(T[held], y[held])}]
        for r in (1, 2):
            n = r * a.per_round
            sa, sb = scale_fit(T[:n], y[:n])
            results.append({"model": "scale fit (previous predictor)", "round": r, **quality(sa * T[held] + sb, y[held])})
            pred = fit_arch_predictor(A[:n], y[:n], table)
            results.append({"model": f"predictor ({pred.kind})", "round": r,
                            **quality([pred.predict_arch(x, table) for x in A[held]], y[held]),
                            "predictor": records.to_dict(pred)})
        state.setdefault("farm", {"tracker": tracker, "key": key, "servers": status.key(key).servers})
        state.update(results=results, repeatability=noise, per_round=a.per_round, held_out=len(y[held]))
        fsio.write_json(out, state)

        tab = Table(title=f"latency predictor on x86-avx2, held-out {len(y[held])} of {len(y)} archs "
                          f"(rounds of {a.per_round}), measured through the farm at {tracker}")
        for col in ("model", "round", "within ±10 %", "MAPE %", "Kendall τ"):
            tab.add_column(col, justify="left" if col == "model" else "right")
        for res in results:
            tab.add_row(res["model"], str(res["round"]), f"{res['within10']:.0f}", f"{res['mape']:.1f}", f"{res['kendall_tau']:.3f}")
        con.print(tab)
        con.print(f"measurement repeatability (same library measured twice): MAPE {noise['mape']:.1f} %, "
                  f"{noise['within10']:.0f} % within ±10 %; latencies {y.min():.3f}-{y.max():.3f} ms; written {out}")
        return 0
    finally:
        import shutil

        if farm_dir is not None:
            subprocess.run([str(REPO / "scripts" / "farm"), "stop"], env=farm_env, check=False)
            shutil.rmtree(farm_dir, ignore_errors=True)
        if own_logs:
            shutil.rmtree(own_logs, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
