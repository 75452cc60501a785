"""Search results over seeds, as ``scripts/bench_search.py`` reports them (issues 4 and 8).

One seed proves little and random search often matches a searched architecture (Yu et al. 2020,
"Evaluating the search phase of NAS"), so every number here is a mean ± sample std over seeds,
every comparison is paired by seed (a seed fixes the data split) with a 95 % Student-t interval,
and the goals the benchmark reports against are computed from those results, never typed in.
Pure functions of per-seed result rows (``{"arm", "seed", "fp32_acc", "quant_acc", "drop_pp",
"int8_ms", "bitops_g", "sparsity", "search_s", ...}``), so they are tested on hand-made rows.
"""

from __future__ import annotations

import numpy as np

SUMMARY_KEYS = ("fp32_acc", "quant_acc", "drop_pp", "int8_ms", "bitops_g", "sparsity", "skip_share", "search_s")
ARM_LABELS = {"a": "DARTS (hinge latency term + collapse remedy + budget fit)", "a0": "plain DARTS (additive latency term, no remedy)",
              "b": "+ QuantNAS noise", "w4": "W4A8, searched without noise", "w4n": "W4A8, searched with QuantNAS noise", "bd": "direct fake-quant search", "c": "+ entropy",
              "d": "+ DASS sparse ops", "e": "SpaceEvo-evolved space", "m": "bits {4,8} + BitOps",
              "pt": "DARTS-PT selection"}
GOAL_ACC_PP, GOAL_SPEEDUP, GOAL_DROP_PP = 1.0, 1.5, 0.5   # issue 4's acceptance goals
_EPS = 1e-9  # a mean that prints as the goal (0.50 pp) meets it: float sums of seeds are not exact


def is_sweep(arm: str) -> bool:
    return arm.startswith("mbv2")


def searched_arms(summary: dict) -> list[str]:
    return [a for a in summary if a != "random" and not is_sweep(a)]


def summarize(rows: list[dict], keys=SUMMARY_KEYS) -> dict:
    """Per arm: n and, per key, mean and sample std (ddof=1; 0 for one seed) over the seeds."""
    out: dict[str, dict] = {}
    for arm in dict.fromkeys(r["arm"] for r in rows):
        mine = [r for r in rows if r["arm"] == arm]
        out[arm] = {"n": len(mine)}
        for k in keys:
            v = np.asarray([r[k] for r in mine if r.get(k) is not None], float)
            out[arm][k] = {"mean": float(v.mean()) if len(v) else None,
                           "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}
    return out


def paired_diff(rows: list[dict], arm: str, ref: str, key: str) -> dict | None:
    """``arm`` minus ``ref`` in ``key``, paired by seed (a seed fixes the data split, so both arms of
    a seed see the same test images): mean, 95 % Student-t interval of the mean, n seeds."""
    from scipy.stats import t as student_t

    a = {r["seed"]: r[key] for r in rows if r["arm"] == arm and r.get(key) is not None}
    b = {r["seed"]: r[key] for r in rows if r["arm"] == ref and r.get(key) is not None}
    d = np.asarray([a[s] - b[s] for s in sorted(a.keys() & b.keys())], float)
    if not len(d):
        return None
    if len(d) == 1:
        return {"mean": float(d[0]), "ci95": [None, None], "n": 1}
    half = float(student_t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))
    return {"mean": float(d.mean()), "ci95": [float(d.mean() - half), float(d.mean() + half)], "n": len(d)}


def nearest_sweep(summary: dict, arm: str) -> str | None:
    """The width-sweep net whose mean measured latency is nearest to ``arm``'s."""
    sweep = [a for a in summary if is_sweep(a) and summary[a]["int8_ms"]["mean"] is not None]
    ms = summary[arm]["int8_ms"]["mean"]
    return min(sweep, key=lambda a: abs(summary[a]["int8_ms"]["mean"] - ms)) if sweep and ms is not None else None


def comparisons(rows: list[dict], summary: dict) -> dict:
    """Each searched arm against random search and against the sweep net nearest in latency:
    paired differences of int8 accuracy (pp) and measured latency (ms)."""
    out = {}
    for arm in searched_arms(summary):
        out[arm] = {}
        for ref in ("random", nearest_sweep(summary, arm)):
            if ref is None or ref not in summary:
                continue
            acc, ms = paired_diff(rows, arm, ref, "quant_acc"), paired_diff(rows, arm, ref, "int8_ms")
            if acc is not None:
                acc = {"mean": 100 * acc["mean"], "ci95": [None if v is None else 100 * v for v in acc["ci95"]],
                       "n": acc["n"]}
            out[arm][ref] = {"int8_acc_pp": acc, "int8_ms": ms}
    return out


def baselines(summary: dict, setting: str = "", data: str | None = None, image_size: int | None = None,
              target: str | None = None) -> list[dict]:
    """``baselines.json`` rows in the format ``edgenas.report`` reads (mean ± std over seeds):
    the searched arms, random search and the hand-designed sweep, each with its ``kind``, and the
    setting as fields (``data``, ``image_size``, ``target``) so a report can flag a different one."""
    out = []
    for arm, s in summary.items():
        if arm == "random":
            kind, name = "random", "random search (same space, budget and compute)"
        elif is_sweep(arm):
            kind, name = "sweep", f"hand-designed: MobileNetV2-style x{arm.split('_')[1]}"
        else:
            kind, name = "searched", f"searched: arm {arm} ({ARM_LABELS.get(arm, arm)})"
        out.append({"name": name, "kind": kind, "arm": arm, "seeds": s["n"], "setting": setting,
                    "data": data, "image_size": image_size, "target": target,
                    "latency_ms": s["int8_ms"]["mean"], "latency_std": s["int8_ms"]["std"],
                    "accuracy": s["quant_acc"]["mean"], "accuracy_std": s["quant_acc"]["std"],
                    "fp32_accuracy": s["fp32_acc"]["mean"], "fp32_accuracy_std": s["fp32_acc"]["std"],
                    "search_s": s["search_s"]["mean"], "search_s_std": s["search_s"]["std"]})
    return out


def sweep_front(summary: dict) -> list[tuple[float, float]]:
    """The hand-designed sweep's mean (int8 ms, int8 accuracy) points, cut to their Pareto front
    (by latency, accuracy strictly rising): a monotone curve, so it can be read both ways."""
    pts = sorted((summary[a]["int8_ms"]["mean"], summary[a]["quant_acc"]["mean"]) for a in summary
                 if is_sweep(a) and summary[a]["int8_ms"]["mean"] is not None and summary[a]["quant_acc"]["mean"] is not None)
    front: list[tuple[float, float]] = []
    for ms, acc in pts:
        if not front or acc > front[-1][1]:
            front.append((ms, acc))
    return front


def _vs_sweep(front: list[tuple[float, float]], ms: float, acc: float) -> dict:
    """One arm's (mean int8 ms, mean int8 accuracy) against the sweep's curve (see ``goals``)."""
    lat, accs = [p[0] for p in front], [p[1] for p in front]
    at_ms = float(np.interp(ms, lat, accs)) if ms <= lat[-1] else None   # below lat[0]: accs[0]
    at_acc = float(np.interp(acc, accs, lat)) if accs[0] <= acc <= accs[-1] else None
    gain = None if at_ms is None else 100 * (acc - at_ms)
    speedup = None if at_acc is None else at_acc / ms
    checks = ([gain >= GOAL_ACC_PP - _EPS] if gain is not None else []) + \
             ([speedup >= GOAL_SPEEDUP - _EPS] if speedup is not None else [])
    return {"int8_ms": ms, "int8_acc": acc, "sweep_acc_at_ms": at_ms, "acc_gain_pp": gain,
            "sweep_ms_at_acc": at_acc, "speedup": speedup, "met": any(checks) if checks else None}


def goals(summary: dict, rows: list[dict] | None = None) -> dict:
    """Issue 4's goals and issue 15's, computed from the summary (means over seeds) and, for the
    intervals, the per-seed rows.

    (i) ``vs_sweep``: each searched arm's int8 model against the hand-designed sweep, met when it
    is >= ``GOAL_ACC_PP`` pp more accurate at equal measured latency or >= ``GOAL_SPEEDUP``x faster
    at equal accuracy. "Equal" reads the sweep's curve by linear interpolation between its nets
    (mean int8 latency, mean int8 accuracy; dominated nets dropped, so the curve is monotone):
    the sweep's accuracy at the arm's latency, and the sweep's latency at the arm's accuracy.
    Outside the sweep's range a reading is ``None`` (not decidable) except that an arm faster than
    the fastest sweep net is compared with that net's accuracy, which a monotone sweep could not
    beat at lower latency (conservative). Each arm is judged on its own; ``met_by`` lists them.
    (ii) ``noise``: the int8 drop (pp, fp32 minus int8 accuracy) with noise-aware search (arm b)
    is <= ``GOAL_DROP_PP`` and smaller than without it (arm a).
    (iii) ``vs_random`` (needs ``rows``): a searched arm's paired 95 % interval over random search
    excludes zero in accuracy at equal latency (accuracy interval above zero, latency not
    significantly higher) or in latency at equal accuracy (latency interval below zero, accuracy
    not significantly lower). (iv) ``noise_w4``: the W4A8 arm searched with noise (``w4n``) drops
    less from fp32 than the one searched without (``w4``). ``vs_sweep``'s ``acc_met_by`` lists the
    arms >= ``GOAL_ACC_PP`` more accurate than the sweep at equal or lower latency (issue 15 asks
    for that reading alone).
    ``met`` is True / False, or None when the arms needed were not run.
    """
    front = sweep_front(summary)
    arms = {}
    for arm in searched_arms(summary):
        ms, acc = summary[arm]["int8_ms"]["mean"], summary[arm]["quant_acc"]["mean"]
        if front and ms is not None and acc is not None:
            arms[arm] = _vs_sweep(front, ms, acc)
    decided = [a for a, g in arms.items() if g["met"] is not None]
    met_by = [a for a in decided if arms[a]["met"]]
    acc_met_by = [a for a, g in arms.items() if g["acc_gain_pp"] is not None and g["acc_gain_pp"] >= GOAL_ACC_PP - _EPS]
    drop = {a: summary[a]["drop_pp"]["mean"] if a in summary else None for a in ("a", "b", "w4", "w4n")}
    noise_met = None if None in (drop["a"], drop["b"]) else drop["b"] <= GOAL_DROP_PP + _EPS and drop["b"] < drop["a"]
    w4_met = None if None in (drop["w4"], drop["w4n"]) else drop["w4n"] < drop["w4"]
    return {"vs_sweep": {"acc_gain_pp": GOAL_ACC_PP, "speedup": GOAL_SPEEDUP, "sweep_front": front, "arms": arms,
                         "met_by": met_by, "met": bool(met_by) if decided else None,
                         "acc_met_by": acc_met_by, "acc_met": bool(acc_met_by) if arms else None},
            "vs_random": vs_random(rows, summary) if rows is not None else {"arms": {}, "met_by": [], "met": None},
            "noise": {"max_drop_pp": GOAL_DROP_PP, "drop_a_pp": drop["a"], "drop_b_pp": drop["b"], "met": noise_met},
            "noise_w4": {"drop_w4_pp": drop["w4"], "drop_w4n_pp": drop["w4n"], "met": w4_met}}


def vs_random(rows: list[dict], summary: dict) -> dict:
    """Goal (iii) of ``goals``: per searched arm, the paired intervals over random search and the verdict."""
    if "random" not in summary:
        return {"arms": {}, "met_by": [], "met": None}
    out = {}
    for arm in searched_arms(summary):
        acc, ms = paired_diff(rows, arm, "random", "quant_acc"), paired_diff(rows, arm, "random", "int8_ms")
        if acc is None or ms is None or acc["ci95"][0] is None:
            continue
        (alo, ahi), (mlo, mhi) = acc["ci95"], ms["ci95"]
        at_equal_latency = alo > 0 and mlo <= 0          # more accurate, not significantly slower
        at_equal_accuracy = mhi < 0 and ahi >= 0         # faster, not significantly less accurate
        out[arm] = {"acc_pp": 100 * acc["mean"], "acc_ci95_pp": [100 * alo, 100 * ahi], "ms": ms["mean"],
                    "ms_ci95": [mlo, mhi], "n": acc["n"], "at_equal_latency": at_equal_latency,
                    "at_equal_accuracy": at_equal_accuracy, "met": at_equal_latency or at_equal_accuracy}
    met_by = [a for a, g in out.items() if g["met"]]
    return {"arms": out, "met_by": met_by, "met": bool(met_by) if out else None}


def _verdict(met: bool | None) -> str:
    return "not decidable" if met is None else ("met" if met else "NOT met")


def goal_lines(g: dict) -> list[str]:
    """The goals as printed lines (also the Markdown report's list)."""
    vs, noise = g["vs_sweep"], g["noise"]
    f = lambda v, spec, unit="", x=1: "-" if v is None else f"{x * v:{spec}}{unit}"  # noqa: E731
    out = [f"(i) searched int8 vs hand-designed sweep (>= +{vs['acc_gain_pp']:.1f} pp at equal latency or >= "
           f"{vs['speedup']:.1f}x faster at equal accuracy): {_verdict(vs['met'])}"
           + (f" by {', '.join(vs['met_by'])}" if vs["met_by"] else "")]
    for arm, a in vs["arms"].items():
        out.append(f"    {arm}: {100 * a['int8_acc']:.2f} % at {a['int8_ms']:.4f} ms; sweep at that latency "
                   f"{f(a['sweep_acc_at_ms'], '.2f', ' %', 100)} "
                   f"({f(a['acc_gain_pp'], '+.2f', ' pp')}), sweep at that accuracy {f(a['sweep_ms_at_acc'], '.4f', ' ms')} "
                   f"({f(a['speedup'], '.2f', 'x')}): {_verdict(a['met'])}")
    if vs.get("acc_met") is not None:
        out.append(f"(i') searched int8 >= +{vs['acc_gain_pp']:.1f} pp over the sweep at equal or lower latency: "
                   f"{_verdict(vs['acc_met'])}" + (f" by {', '.join(vs['acc_met_by'])}" if vs["acc_met_by"] else ""))
    out.append(f"(ii) int8 drop with noise-aware search (b) <= {noise['max_drop_pp']:.1f} pp and below plain DARTS (a): "
               f"b {f(noise['drop_b_pp'], '.2f', ' pp')}, a {f(noise['drop_a_pp'], '.2f', ' pp')}: {_verdict(noise['met'])}")
    rnd = g.get("vs_random", {"arms": {}, "met": None})
    if rnd["arms"]:
        out.append(f"(iii) paired 95 % interval over random search excludes zero (accuracy at equal latency or latency "
                   f"at equal accuracy): {_verdict(rnd['met'])}" + (f" by {', '.join(rnd['met_by'])}" if rnd["met_by"] else ""))
        for arm, a in rnd["arms"].items():
            out.append(f"    {arm} - random: int8 {a['acc_pp']:+.2f} pp [{a['acc_ci95_pp'][0]:+.2f}, {a['acc_ci95_pp'][1]:+.2f}], "
                       f"latency {a['ms']:+.4f} ms [{a['ms_ci95'][0]:+.4f}, {a['ms_ci95'][1]:+.4f}]: {_verdict(a['met'])}")
    w4 = g.get("noise_w4", {"met": None})
    if w4["met"] is not None:
        out.append(f"(iv) W4A8 drop with noise-aware search (w4n) below the search without noise (w4): "
                   f"w4n {w4['drop_w4n_pp']:.2f} pp, w4 {w4['drop_w4_pp']:.2f} pp: {_verdict(w4['met'])}")
    return out


TABLE = (("fp32 %", "fp32_acc", ".2f", 100), ("int8 %", "quant_acc", ".2f", 100), ("drop pp", "drop_pp", ".2f", 1),
         ("int8 ms", "int8_ms", ".4f", 1), ("BitOps G", "bitops_g", ".4f", 1), ("sparsity %", "sparsity", ".1f", 100),
         ("skip %", "skip_share", ".0f", 100),
         ("search s", "search_s", ".0f", 1))


def summary_table(summary: dict, markdown: bool = False) -> str:
    """Mean ± std per arm and column: fixed-width text for the terminal, or a Markdown table."""
    pm = lambda s, k, spec, x: "-" if s[k]["mean"] is None else f"{x * s[k]['mean']:{spec}} ± {x * s[k]['std']:{spec}}"  # noqa: E731
    head = ["arm", "n"] + [c[0] for c in TABLE]
    body = [[arm, str(s["n"])] + [pm(s, k, spec, x) for _, k, spec, x in TABLE] for arm, s in summary.items()]
    if markdown:
        return "\n".join("| " + " | ".join(r) + " |" for r in [head, ["---"] * 2 + ["---:"] * len(TABLE)] + body)
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    lines = [" ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in [head] + body]
    return "\n".join([lines[0], "-" * len(lines[0])] + lines[1:])
