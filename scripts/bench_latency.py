#!/usr/bin/env python
"""Measurement repeatability and latency-predictor quality, measured through a loopback device farm.

1. start a loopback farm (``scripts/farm``, 2 servers, one per core) unless --tracker/--key name one;
2. profile the INT8 op table of the space (the default space, or --space RUN/space.json, e.g. the
   one SpaceEvo evolved) through the farm;
3. compile the reference library (the space's first architecture) and calibrate it;
4. measure N random architectures of the space whole (compiled INT8, through the farm), each
   **twice**, every time interleaved with the reference (A, R, A, R, ...: docs/measurement.md);
5. repeatability: the same library measured twice, as absolute medians and as ratios to the
   reference; goal >= 95 % of pairs within ±5 % of each other;
6. the predictor as the build's feedback fits it (docs/latency.md): round 1 sees the first
   --per-round archs, round 2 the first 2 x --per-round (when they fit before the held-out ones);
   the last --heldout archs are held out. Reported on
   the held-out archs, before and after each refit: share within ±10 %, mean abs % error, Kendall
   tau; goal after one round: >= 95 % within ±10 % and tau >= 0.9.

The 1-minute load before and after, the load and steal seen during the measurements, and the
windows discarded for interference are printed beside the numbers. Compiles use an empty
temporary tuning root unless --tuning-logs is given. Progress is checkpointed in --out, so an
interrupted run continues with --resume.

    flock /tmp/edgenas-bench.lock scripts/bench_latency.py --archs 42 --per-round 16 --heldout 10 --out runs/bench_latency.json

With --resume and a larger --archs, a run measures more architectures of the same seeded sequence; with
another --per-round or --heldout it re-fits the stored measurements without measuring again.
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
REPEAT_GOAL = (95.0, 5.0)          # share of pairs, within ± this % of each other
PREDICTOR_GOAL = (95.0, 10.0, 0.9)  # share of held-out archs within ± this %, and Kendall tau


def start_farm(directory: Path) -> tuple[str, str, dict]:
    import socket

    with socket.socket() as s:   # a free port for the tracker (servers scan above it)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "EDGENAS_FARM_DIR": str(directory)}
    subprocess.run([str(REPO / "scripts" / "farm"), "start", "2", "--port", str(port), "--key", "bench"], env=env, check=True)
    return f"127.0.0.1:{port}", "bench", env


def repeatability(first, again, within_pct: float) -> dict:
    import numpy as np

    a, b = np.asarray(first, float), np.asarray(again, float)
    diff = np.abs(a - b) / np.minimum(a, b) * 100
    return {"n": int(len(a)), "within_pct": within_pct, "within": float((diff <= within_pct + 1e-9).mean() * 100),
            "within10": float((diff <= 10 + 1e-9).mean() * 100), "mape": float(diff.mean()), "max": float(diff.max())}


def goal_line(what: str, have: float, want: float, unit: str = "%") -> str:
    return f"{what}: {have:.1f}{unit} (goal >= {want:g}{unit}) " + ("met" if have >= want else f"NOT met, short by {want - have:.1f}{unit}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tracker")
    ap.add_argument("--key")
    ap.add_argument("--target", default="x86-avx2", help="target the farm serves (rpi4: an emulated aarch64 farm)")
    ap.add_argument("--space", help="a SpaceConfig record (e.g. RUN/space.json of an evolved-space build)")
    ap.add_argument("--stages", help="an evolved space as SpaceEvo prints it, per stage FAMILY:WIDTH, e.g. dw:24,dw:32,fmb:40 "
                                     "(each stage offers the family's variants and skip)")
    ap.add_argument("--image-size", type=int, default=16)
    ap.add_argument("--archs", type=int, default=40)
    ap.add_argument("--per-round", type=int, default=16,
                    help="points per feedback round (the build measures 16 per round by default)")
    ap.add_argument("--heldout", type=int, default=10, help="the last HELDOUT archs are never fitted")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tuning-logs")
    ap.add_argument("--out", default=str(REPO / "runs" / "bench_latency.json"))
    ap.add_argument("--resume", action="store_true")
    a = ap.parse_args()
    if a.heldout < 3 or a.archs < a.per_round + a.heldout:
        ap.error("--archs must hold one round of --per-round archs and --heldout (>= 3) held-out archs")
    own_logs = None if a.tuning_logs or "EDGENAS_TUNING_LOGS" in os.environ else tempfile.mkdtemp(prefix="edgenas-bench-tl-")
    os.environ.setdefault("EDGENAS_TUNING_LOGS", a.tuning_logs or own_logs)

    import dataclasses

    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from edgenas import fsio, records
    from edgenas.latency.predictor import fit_arch_predictor, quality
    from edgenas.latency.profile import compile_arch, measure_arch, profile_space
    from edgenas.latency.table import LatencyTable
    from edgenas.measure.rpc import Farm
    from edgenas.quantize.recipe import get_recipe
    from edgenas.space.arch import Arch, SpaceConfig, arch_from_choices
    from edgenas.target import get_target

    con, out = Console(), Path(a.out)
    state = fsio.read_json(out) if a.resume and out.exists() else {}
    state.setdefault("load_before", os.getloadavg()[0])
    farm_dir = None
    if a.tracker and a.key:
        tracker, key = a.tracker, a.key
    else:
        farm_dir = Path(tempfile.mkdtemp(prefix="edgenas-bench-farm-"))
        tracker, key, farm_env = start_farm(farm_dir)
    work = Path(tempfile.mkdtemp(prefix="edgenas-bench-lib-"))
    try:
        target, recipe = get_target(a.target), get_recipe("int8-per-channel")
        farm = Farm(tracker, key, timeout_s=120, target=target.name)
        space = (records.load(a.space, SpaceConfig) if a.space
                 else dataclasses.replace(SpaceConfig(), image_size=a.image_size))
        if a.stages:
            from edgenas.space.arch import StageConfig
            from edgenas.space.ops import BLOCK_TYPES

            fams = [x.split(":") for x in a.stages.split(",")]
            space = dataclasses.replace(space, stages=tuple(
                StageConfig(int(w), st.depth, st.stride, ops=BLOCK_TYPES[f] + ("skip",)) for (f, w), st in zip(fams, space.stages)))
        status = farm.check()
        con.print(f"farm {tracker} key {key}: {status.key(key).servers} servers; space {a.stages or a.space or 'default'}")

        t0 = time.time()
        if "table" in state:
            table = records.from_dict(state["table"], LatencyTable)
        else:
            table = profile_space(space, LatencyTable(target.name), recipe, target,
                                  lambda lib, shape: farm.measure(lib, shape, repeat=15).median_ms,
                                  progress=lambda i, n, k: con.print(f"  op {i + 1}/{n} {k}"))
            state["table"] = records.to_dict(table)
            state["profile_s"] = round(time.time() - t0, 1)
            fsio.write_json(out, state)

        ref_arch = arch_from_choices(space, [space.candidates(i)[0] for i in range(len(space.positions()))])
        ref_lib = compile_arch(ref_arch, recipe, target, work / "reference.so")
        if "reference_ms" not in state:
            state["reference_ms"] = farm.measurement(ref_lib, ref_arch.input_shape, 50).stats.median_ms
            fsio.write_json(out, state)
        ref_ms = state["reference_ms"]
        con.print(f"reference {ref_arch}: calibrated {ref_ms:.4f} ms")

        rng, archs = np.random.default_rng(a.seed), []
        while len(archs) < a.archs:
            arch = arch_from_choices(space, [space.candidates(i)[rng.integers(len(space.candidates(i)))]
                                             for i in range(len(space.positions()))])
            if arch not in archs and arch != ref_arch:
                archs.append(arch)
        rows = state.setdefault("archs", [])
        measured_now = len(archs) > len(rows)
        for arch in archs[len(rows):]:
            twice = []

            def measure_twice(lib, shape, twice=twice):
                twice[:] = [farm.measurement(lib, shape, 15, reference=ref_lib) for _ in range(2)]

            t = time.time()
            measure_arch(arch, recipe, target, measure_twice)
            m1, m2 = twice
            rows.append({"arch": str(arch), "table_ms": table.arch_sum(arch), "seconds": round(time.time() - t, 1),
                         "abs_ms": [m1.stats.median_ms, m2.stats.median_ms],
                         "ratio": [m1.reference.ratio, m2.reference.ratio],
                         "windows": [len(m.reference.windows) for m in twice],
                         "discarded": [m.reference.discarded for m in twice],
                         "load": [w.interference.load_1min for m in twice for w in m.reference.windows][-1],
                         "steal": [w.interference.steal_share for m in twice for w in m.reference.windows
                                   if w.interference.steal_share is not None],
                         "preemptions": [w.interference.preemptions for m in twice for w in m.reference.windows
                                         if w.interference.preemptions is not None]})
            r = rows[-1]
            con.print(f"  arch {len(rows)}/{a.archs}: {r['abs_ms'][0]:.4f} / {r['abs_ms'][1]:.4f} ms, ratio "
                      f"{r['ratio'][0]:.4f} / {r['ratio'][1]:.4f}, table sum {r['table_ms']:.4f} ms, "
                      f"{sum(r['discarded'])} of {sum(r['windows'])} windows discarded, load {r['load']:.1f}")
            fsio.write_json(out, state)

        A = [Arch.parse(r["arch"]) for r in rows]
        y_abs = np.array([r["abs_ms"][0] for r in rows])
        y = np.array([r["ratio"][0] for r in rows]) * ref_ms           # reference-calibrated ms
        T = np.array([table.arch_sum(x) for x in A])
        held = slice(len(rows) - a.heldout, None)
        rounds = [r for r in (1, 2) if r * a.per_round <= len(rows) - a.heldout]
        rep = {"absolute": repeatability(*zip(*[r["abs_ms"] for r in rows]), REPEAT_GOAL[1]),
               "ratio": repeatability(*zip(*[r["ratio"] for r in rows]), REPEAT_GOAL[1])}
        results = [{"model": "table sum (before feedback)", "round": 0, **quality(T[held], y[held])}]
        for r in rounds:
            n = r * a.per_round
            pred = fit_arch_predictor(A[:n], y[:n], table)
            results.append({"model": f"after round {r} refit ({pred.kind}, {n} points)", "round": r,
                            **quality([pred.predict_arch(x, table) for x in A[held]], y[held]),
                            "predictor": records.to_dict(pred)})
            pa = fit_arch_predictor(A[:n], y_abs[:n], table)
            results.append({"model": f"  same, fitted on absolute medians ({pa.kind})", "round": r, "absolute": True,
                            **quality([pa.predict_arch(x, table) for x in A[held]], y_abs[held])})
        windows = sum(sum(r["windows"]) for r in rows)
        discarded = sum(sum(r["discarded"]) for r in rows)
        steal = [s for r in rows for s in r["steal"]]
        load_seen = [r["load"] for r in rows]
        r1 = results[1]
        goals = {
            "repeatability_ratio": rep["ratio"]["within"] >= REPEAT_GOAL[0],
            "repeatability_absolute": rep["absolute"]["within"] >= REPEAT_GOAL[0],
            "predictor_round1": r1["within10"] >= PREDICTOR_GOAL[0] and r1["kendall_tau"] >= PREDICTOR_GOAL[2],
        }
        state.setdefault("farm", {"tracker": tracker, "key": key, "servers": status.key(key).servers})
        now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        if measured_now or "date" not in state:   # a re-fit of stored measurements keeps when and how loaded they were
            state.update(load_after=os.getloadavg()[0], date=now)
        state.update(results=results, repeatability=rep, per_round=a.per_round, held_out=len(y[held]), goals=goals,
                     target=target.name, space=a.stages or a.space or "default", windows=windows, discarded=discarded,
                     load_during=[min(load_seen), max(load_seen)], summarised=now,
                     steal_mean=float(np.mean(steal)) if steal else None, reference=str(ref_arch), cpu=_cpu_name())
        fsio.write_json(out, state)

        tab = Table(title=f"latency predictor on {target.name}, held-out {len(y[held])} of {len(y)} archs "
                          f"(rounds of {a.per_round}), measured through the farm at {tracker}")
        for col in ("model", "round", "within ±10 %", "MAPE %", "Kendall τ"):
            tab.add_column(col, justify="left" if col == "model" else "right")
        for res in results:
            tab.add_row(res["model"], str(res["round"]), f"{res['within10']:.0f}", f"{res['mape']:.1f}", f"{res['kendall_tau']:.3f}")
        con.print(tab)
        for name, q in rep.items():
            con.print(f"repeatability ({name}, same library measured twice, n={q['n']}): "
                      + goal_line(f"within ±{REPEAT_GOAL[1]:g} %", q["within"], REPEAT_GOAL[0])
                      + f"; within ±10 % {q['within10']:.0f} %, MAPE {q['mape']:.1f} %, worst {q['max']:.1f} %")
        con.print(goal_line("predictor after round 1: held-out within ±10 %", r1["within10"], PREDICTOR_GOAL[0])
                  + f"; Kendall τ {r1['kendall_tau']:.3f} (goal >= {PREDICTOR_GOAL[2]}) "
                  + ("met" if r1["kendall_tau"] >= PREDICTOR_GOAL[2] else "NOT met"))
        con.print(f"{discarded} of {windows} measurement windows discarded for interference; "
                  f"steal {state['steal_mean'] or 0:.2%} on the measured cores; 1-minute load {state['load_before']:.2f} before, "
                  f"{load_seen and min(load_seen):.2f}-{load_seen and max(load_seen):.2f} during, "
                  f"{state['load_after']:.2f} after; latencies {y_abs.min():.3f}-{y_abs.max():.3f} ms; written {out}")
        return 0
    finally:
        import shutil

        if farm_dir is not None:
            subprocess.run([str(REPO / "scripts" / "farm"), "stop"], env=farm_env, check=False)
            shutil.rmtree(farm_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
        if own_logs:
            shutil.rmtree(own_logs, ignore_errors=True)


def _cpu_name() -> str:
    from edgenas.measure.local import cpu_name

    return cpu_name()


if __name__ == "__main__":
    sys.exit(main())
