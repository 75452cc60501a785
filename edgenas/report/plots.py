"""The report's figures (matplotlib, object API only: no pyplot global state, no display needed).

Each function takes the ``RunView`` and returns a ``Figure``, or ``None`` when the run does not
have the data yet. The Pareto plot is the one a user decides with, so it shows what we know and
marks what we do not: candidates measured in the feedback loop have a measured latency but no
accuracy (they are never trained: latency does not depend on weights), so they sit on a strip
below the accuracy axis instead of being given invented accuracies.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from .collect import RunView, layer_latencies

ROUND_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def _round_color(r: int) -> str:
    return ROUND_COLORS[(r - 1) % len(ROUND_COLORS)]


def _front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Non-dominated (lower latency, higher accuracy) points, by latency."""
    front, best = [], -np.inf
    for x, y in sorted(points):
        if y > best:
            front.append((x, y))
            best = y
    return front


def pareto(view: RunView) -> Figure | None:
    rows = [(rv.index, row) for rv in view.rounds for row in rv.measured]
    m = view.manifest
    if not rows and m is None and not view.baselines:
        return None
    fig = Figure(figsize=(9, 6), layout="constrained")
    ax, strip = fig.subplots(2, 1, sharex=True, height_ratios=(4, 1.3))
    known: list[tuple[float, float]] = []
    acc = m.accuracy if m is not None else {}
    int8 = acc.get("int8_tvm", acc.get("int8_onnx"))
    if m is not None and m.latency and int8 is not None and acc.get("fp32") is not None:
        x = m.latency["median_ms"]
        ax.errorbar([x], [int8 * 100], xerr=[[0.0], [max(0.0, m.latency.get("p90_ms", x) - x)]],
                    fmt="*", ms=16, color="#d62728", ecolor="#d62728", capsize=3, zorder=5,
                    label=f"final model, int8 on {m.target} (median, bar to p90)")
        ax.plot([x], [acc["fp32"] * 100], "o", mfc="none", mec="#d62728", ms=10, mew=2, zorder=5,
                label="same architecture, fp32 accuracy")
        ax.plot([x, x], [int8 * 100, acc["fp32"] * 100], ":", color="#d62728")
        known.append((x, int8 * 100))
    # baselines.json (scripts/bench_search.py): kind searched | random | sweep, mean ± std over seeds
    sweep = sorted((b for b in view.baselines if b.get("kind") == "sweep" and b.get("latency_ms") is not None
                    and b.get("accuracy") is not None), key=lambda b: b["latency_ms"])
    if len(sweep) > 1:
        ax.plot([b["latency_ms"] for b in sweep], [b["accuracy"] * 100 for b in sweep], "--", color="gray", lw=1)
    for i, b in enumerate(view.baselines):
        lat, acc = b.get("latency_ms"), b.get("accuracy")
        if lat is None:
            continue
        kind = b.get("kind")
        marker = {"random": "s", "sweep": "o"}.get(kind) or ("^", "D", "v", "P", "X", "<", ">")[i % 7]
        color = {"random": "black", "sweep": "gray"}.get(kind) or (f"C{i % 10}" if kind == "searched" else "black")
        if acc is None:
            strip.plot([lat], [0], marker, color=color, mfc="none", ms=9)
            strip.annotate(b["name"], (lat, 0), xytext=(4, -10), textcoords="offset points", fontsize=8)
            continue
        ax.errorbar([lat], [acc * 100], xerr=b.get("latency_std") or None, yerr=(b.get("accuracy_std") or 0) * 100 or None,
                    fmt=marker, ms=8, color=color, mfc="white" if kind != "searched" else color, capsize=3,
                    label=(b["name"] if kind else f"baseline: {b['name']}") + (f" ({b['seeds']} seeds)" if b.get("seeds") else ""))
        known.append((lat, acc * 100))
    if len(known) > 1:
        fx, fy = zip(*_front(known))
        ax.step(fx, fy, where="post", color="gray", alpha=0.6, lw=1.5, label="Pareto front (known accuracy)")
    if known:  # at least a 2-point span: a 0.2-point spread must not look like a cliff
        lo, hi = ax.get_ylim()
        if hi - lo < 2.0:
            lo, hi = (hi + lo) / 2 - 1.0, (hi + lo) / 2 + 1.0
        ax.set_ylim(lo, min(hi, 100.5))  # accuracy above 100 % is not a place to look
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy vs measured INT8 latency" + (f" on {m.target}" if m is not None else "")
                 + ("\nbaselines from another setting, not comparable: " + "; ".join(view.baselines_mismatch)
                    if view.baselines_mismatch else ""))
    ax.grid(alpha=0.3)
    if ax.has_data():
        ax.legend(loc="best", fontsize=8)
    for r, row in rows:
        strip.plot([row["measured_ms"]], [r], "D" if row.get("chosen") else "o", color=_round_color(r),
                   ms=9 if row.get("chosen") else 6, mfc=_round_color(r) if row.get("chosen") else "none", mew=1.5)
    budgets = [rv.summary["budget_ms"] for rv in view.rounds if rv.summary]
    for a in (ax, strip):
        if budgets:
            a.axvline(budgets[-1], ls="--", color="gray", lw=1)
    if budgets:
        ax.annotate(f"budget {budgets[-1]:.3f} ms", (budgets[-1], 0.02), xycoords=("data", "axes fraction"),
                    xytext=(3, 0), textcoords="offset points", fontsize=8, color="gray")
    strip.set_yticks(range(1, len(view.rounds) + 1) if view.rounds else [0])
    strip.set_yticklabels([f"round {rv.index}" for rv in view.rounds] or [""])
    strip.set_ylim(0.3 if view.rounds else -0.7, len(view.rounds) + 0.7 if view.rounds else 0.7)
    strip.invert_yaxis()
    strip.set_xlabel("measured INT8 latency (ms, median)")
    strip.set_title("measured candidates, accuracy not measured (latency only): ◆ chosen, ○ sampled", fontsize=9)
    strip.grid(alpha=0.3, axis="x")
    return fig


def rounds_scatter(view: RunView) -> Figure | None:
    """Predicted vs measured latency of every candidate, per round (the feedback loop at work)."""
    pts = [(rv.index, {**row, "measured_ms": row.get("calibrated_ms") or row["measured_ms"]})   # what the predictor
           for rv in view.rounds for row in rv.measured if row.get("measured_ms")]            # learns (docs/latency.md)
    if not pts:
        return None
    fig = Figure(figsize=(5.5, 4.5), layout="constrained")
    ax = fig.subplots()
    for r, row in pts:
        ax.plot(row["measured_ms"], row["predicted_ms"], "D" if row.get("chosen") else "o", color=_round_color(r),
                ms=8 if row.get("chosen") else 6)
    for rv in view.rounds:
        ax.plot([], [], "o", color=_round_color(rv.index), label=f"round {rv.index}")
    lim = max(max(p[1]["measured_ms"], p[1]["predicted_ms"]) for p in pts) * 1.1
    ax.plot([0, lim], [0, lim], "--", color="gray", lw=1, label="predicted = measured")
    ax.set(xlim=(0, lim), ylim=(0, lim), xlabel="measured (ms, at the reference's calibrated speed)", ylabel="predicted by the round's model (ms)",
           title="Latency predictor per round (◆ chosen)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def accuracy(view: RunView) -> Figure | None:
    m = view.manifest
    if m is None:
        return None
    acc = m.accuracy
    names = [("fp32", "fp32 (PyTorch)"), ("int8_brevitas", "int8 QAT (brevitas)"), ("int8_onnx", "int8 (onnxruntime)"),
             ("int8_tvm", f"int8 (TVM, {m.target})")]
    names = [(k, label) for k, label in names if acc.get(k) is not None]
    fig = Figure(figsize=(6.5, 3.4), layout="constrained")
    ax = fig.subplots()
    vals = [acc[k] * 100 for k, _ in names]
    bars = ax.barh([label for _, label in names], vals, color=["#1f77b4"] + ["#d62728"] * (len(vals) - 1))
    ax.bar_label(bars, fmt="%.2f %%", padding=3, fontsize=9)
    lo = max(0.0, min(vals) - 10)
    ax.set(xlim=(lo, 100 + (100 - lo) * 0.15), xlabel=f"test accuracy (%), {m.data}, n={acc.get('n')}",
           title="INT8 vs FP32 accuracy")
    ax.invert_yaxis()
    ax.grid(alpha=0.3, axis="x")
    return fig


def op_breakdown(view: RunView) -> Figure | None:
    items = layer_latencies(view)
    if not items:
        return None
    fig = Figure(figsize=(8, 0.42 * len(items) + 1.4), layout="constrained")
    ax = fig.subplots()
    labels = [label for label, _ in items]
    vals = [ms if ms is not None else 0.0 for _, ms in items]
    bars = ax.barh(labels, vals, color=["#7f7f7f"] + ["#1f77b4"] * (len(items) - 1))
    ax.bar_label(bars, labels=[f"{ms:.4f} ms" if ms is not None else "not in op table" for _, ms in items],
                 padding=3, fontsize=8)
    total = sum(vals)
    measured = view.manifest.latency["median_ms"] if view.manifest is not None and view.manifest.latency else None
    title = f"Per-op INT8 latency on {view.op_table.target}\nop table sum {total:.3f} ms"
    title += f", whole model measured {measured:.3f} ms" if measured else ""
    ax.set(xlabel="ms (each op compiled and measured alone)", title=title, xlim=(0, max(vals + [1e-6]) * 1.35))
    ax.invert_yaxis()
    ax.grid(alpha=0.3, axis="x")
    return fig


def alpha_trajectories(view: RunView) -> Figure | None:
    """softmax(α) of each candidate per layer across the epochs of every round."""
    hists = [(rv.index, rv.history) for rv in view.rounds if rv.history and rv.history[0].get("probs")]
    if not hists:
        return None
    n_layers = len(hists[0][1][0]["probs"])
    cols = min(3, n_layers)
    rows = -(-n_layers // cols)
    fig = Figure(figsize=(4.2 * cols, 2.6 * rows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)).ravel()
    names = sorted({lab for labs in view.candidate_labels for lab in labs})
    cmap = {n: ROUND_COLORS[i % len(ROUND_COLORS)] for i, n in enumerate(names)}
    for i in range(n_layers):
        ax, start = axes[i], 0
        for r, hist in hists:
            probs = np.array([h["probs"][i] for h in hist])
            xs = np.arange(start + 1, start + len(hist) + 1)
            labs = view.candidate_labels[i] if i < len(view.candidate_labels) else []
            for j in range(probs.shape[1]):
                lab = labs[j] if j < len(labs) else f"candidate {j}"
                ax.plot(xs, probs[:, j], color=cmap.get(lab, "black"), lw=1.6, label=lab if r == hists[0][0] else None)
            if start:
                ax.axvline(start + 0.5, color="gray", ls=":", lw=1)
            start += len(hist)
        ax.set_title(f"layer {i}", fontsize=9)
        if i >= n_layers - cols:
            ax.set_xlabel("epoch", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes[n_layers:]:
        ax.set_visible(False)
    handles = {h.get_label(): h for ax in axes[:n_layers] for h in ax.get_lines() if not h.get_label().startswith("_")}
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=min(6, len(handles)), fontsize=8)
    fig.suptitle("softmax(α) per layer over the search epochs of all rounds (dotted line: next round)", fontsize=10)
    return fig
