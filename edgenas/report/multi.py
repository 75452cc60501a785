"""The report of a multi-target build: every target's accuracy-latency front side by side.

Read from ``OUT/multi.json`` alone (``build.multi`` writes it), so that ``edgenas report OUT``
regenerates it. Each panel is one target's front: the candidates measured on that target (its
feedback rounds' candidates and held-out samples, and the other targets' chosen models), at their accuracy with the
supernet's inherited weights, the non-dominated ones joined; the target's chosen model is
marked (its fine-tuned int8 test accuracy is in the table above the figure: a different split
and training, so not on the same axis). The cross-target table sets each
chosen model's latency on every target beside that target's own model; the cost table sets the
shared training beside what each target spent alone (docs/methods.md §8).
"""

from __future__ import annotations

import io
from html import escape
from pathlib import Path

from matplotlib.figure import Figure

from .. import fsio
from ..build.rundir import MULTI
from .html import CSS, _table, _td, img
from .plots import _front


def fronts_figure(multi: dict) -> Figure:
    names = multi["targets"]
    fig = Figure(figsize=(5.2 * len(names), 4.6), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, names):
        f = multi["fronts"][name]
        own = [c for c in f["candidates"] if c["source"] == "search"]
        held = [c for c in f["candidates"] if c["source"] == "held-out sample"]
        other = [c for c in f["candidates"] if c["source"].startswith("chosen for")]
        ax.plot([c["measured_ms"] for c in own], [c["inherited_acc"] * 100 for c in own], "o", color="#1f77b4",
                alpha=0.7, label="candidates of its search (inherited weights)")
        if held:
            ax.plot([c["measured_ms"] for c in held], [c["inherited_acc"] * 100 for c in held], "^", color="#2ca02c",
                    alpha=0.7, label="held-out samples of its feedback loop")
        for c in other:
            ax.plot([c["measured_ms"]], [c["inherited_acc"] * 100], "s", color="#ff7f0e", ms=9,
                    label=f"model {c['source']} (inherited weights)")
        front = _front([(c["measured_ms"], c["inherited_acc"] * 100) for c in f["candidates"]])
        ax.step([x for x, _ in front], [y for _, y in front], where="post", color="gray", lw=1, label="front")
        chosen = next((c for c in f["candidates"] if c["chosen"]), None)
        if chosen is not None:
            ax.plot([chosen["measured_ms"]], [chosen["inherited_acc"] * 100], "*", color="#d62728", ms=16,
                    label="chosen for this target")
        ch = f["chosen"]
        ax.set_title(f"{name}" + (" (emulated: not board speed)" if ch.get("emulated") else ""))
        ax.set_xlabel(f"measured INT8 latency on {name} (ms)")
        ax.set_ylabel("validation accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def cross_rows(multi: dict) -> list[list[str]]:
    """Row per chosen model, column per target: its measured latency there (own model in bold),
    with its ratio to that target's own model."""
    own = {n: multi["fronts"][n]["chosen"].get("latency_ms") for n in multi["targets"]}
    arch = {n: multi["fronts"][n]["chosen"]["arch"] for n in multi["targets"]}
    on = {(r["model_of"], r["on"]): r["measured_ms"] for r in multi["cross"]}
    rows = []
    for a in multi["targets"]:
        cells = [_td(f"chosen for {a}")]
        for b in multi["targets"]:
            ms = own[a] if a == b else on.get((a, b))
            text = "-" if ms is None else f"{ms:.4f}"
            if a != b and ms is not None and own[b]:
                # the same architecture twice: the ratio is the measurements' spread, not a cost
                text += " (same architecture)" if arch[a] == arch[b] else f" ({ms / own[b]:.2f}× {b}'s own)"
            cells.append(_td(f"<b>{text}</b>" if a == b else escape(text), num=True, raw=True))
        rows.append(cells)
    return rows


def cost_rows(multi: dict) -> list[list[str]]:
    s = multi["seconds"]
    rows = [[_td("shared supernet training"), _td(f"{s.get('supernet', 0.0):.1f}", num=True)]]
    rows += [[_td(f"target {n}: its own sub-run"), _td(f"{s.get(f'target {n}', 0.0):.1f}", num=True)] for n in multi["targets"]]
    rows += [[_td("cross-target compile + measure"), _td(f"{s.get('cross', 0.0):.1f}", num=True)],
             [_td("wall time of the whole build"), _td(f"{s.get('wall', 0.0):.1f}", num=True)]]
    return rows


def page(multi: dict, png: bytes, run: Path) -> str:
    names = ", ".join(multi["targets"])
    front_rows = []
    for n in multi["targets"]:
        for c in multi["fronts"][n]["candidates"]:
            front_rows.append([_td(n), _td(c["arch"]), _td(c["source"]), _td(f"{c['measured_ms']:.4f}", num=True),
                               _td(f"{c['inherited_acc'] * 100:.2f}", num=True),
                               _td("yes" if c["on_front"] else ""), _td("chosen" if c["chosen"] else "")])
    chosen_rows = [[_td(n), _td(f["chosen"]["arch"]), _td(f"{(f['chosen'].get('int8_acc') or 0) * 100:.2f}", num=True),
                    _td(f"{f['chosen'].get('latency_ms') or float('nan'):.4f}", num=True),
                    _td(f["chosen"].get("where") or ""), _td("yes" if f["chosen"].get("emulated") else "no"),
                    _td(multi["verified"].get(n, "-")), _td(multi["sub_runs"][n] + "/report.html")]
                   for n, f in multi["fronts"].items()]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>edgenas multi-target report: {escape(run.name)}</title><style>{CSS}</style></head>
<body>
<h1>edgenas multi-target report: {escape(run.name)}</h1><p class="sub">targets {escape(names)}; one supernet trained once, searched per target</p>
<h2>Chosen models</h2>
{_table(["target", "architecture", "int8 acc % (test, TVM)", "median ms", "measured", "emulated", "bundle verified", "sub-run report"], chosen_rows, 'id="chosen"')}
<h2 id="fronts">Accuracy-latency front per target</h2>
{img(png, "fronts")}
{_table(["target", "architecture", "source", "measured ms", "inherited acc %", "on front", ""], front_rows, 'id="front-table"')}
<h2 id="cross">Cross-target cost: each chosen model measured on every target (median ms)</h2>
{_table(["model", *multi["targets"]], cross_rows(multi), 'id="cross-table"')}
<h2 id="cost">Cost (seconds)</h2>
{_table(["stage", "s"], cost_rows(multi), 'id="cost-table"')}
</body></html>
"""


def write_multi_report(run_dir: str | Path) -> Path:
    """Write ``report.html`` and ``report/fronts.png`` of the multi-target build in ``run_dir``."""
    run = Path(run_dir)
    multi = fsio.read_json(run / MULTI)
    png = _png(fronts_figure(multi))
    fsio.write_bytes(run / "report" / "fronts.png", png)
    return fsio.write_text(run / "report.html", page(multi, png, run))
