"""The report page: one self-contained HTML file (inline CSS, PNGs as base64 data URIs, no scripts).

A report is read on a laptop, attached to a ticket, opened from a CI artifact: it must open
offline and show the same thing everywhere, so nothing is fetched and nothing is run. Every
value is escaped; the figures come from ``plots.py`` / ``diagram.py`` as PNG bytes.
"""

from __future__ import annotations

import base64
import datetime as _dt
from html import escape
from pathlib import Path

from ..build.cost import cost_line
from ..search.collapse import DEFAULT_THRESHOLD, skip_share_series
from .baselines import RUN_FILE
from .collect import RunView, describe

CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:24px auto;max-width:1150px;color:#222;padding:0 16px}
h1{font-size:1.5em;margin-bottom:0}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}
.sub{color:#666;margin-top:4px;font-size:.92em;word-break:break-all}
table{border-collapse:collapse;font-size:.88em;margin:8px 0}th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#18794e;font-weight:600}.bad{color:#c62828;font-weight:600}.na{color:#888;font-style:italic}
img{max-width:100%;height:auto;display:block;margin:6px 0;border:1px solid #eee}
code{font-size:.9em;background:#f6f6f6;padding:1px 4px;word-break:break-all}.grid{display:flex;flex-wrap:wrap;gap:16px}
"""


def img(png: bytes | None, alt: str) -> str:
    if png is None:
        return f'<p class="na">{escape(alt)}: not available yet.</p>'
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _pct(v) -> str:
    return f"{v * 100:.2f} %" if isinstance(v, (int, float)) else "-"


def _ms(v) -> str:
    return f"{v:.4f}" if isinstance(v, (int, float)) else '<span class="na">-</span>'


def _table(head: list[str], rows: list[list[str]], attrs: str = "", row_class: str = "") -> str:
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    cls = f' class="{row_class}"' if row_class else ""
    body = "".join(f"<tr{cls}>" + "".join(rows_cell for rows_cell in r) + "</tr>" for r in rows)
    return f"<table {attrs}><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _td(text, num: bool = False, raw: bool = False) -> str:
    return f'<td{" class=num" if num else ""}>{text if raw else escape(str(text))}</td>'


def summary_rows(view: RunView) -> list[tuple[str, str]]:
    m, cfg = view.manifest, view.config
    rows = [("run directory", str(view.run.resolve())), ("target", (m.target if m else cfg.get("target", "?"))),
            ("architecture", str(view.arch) if view.arch is not None else "not chosen yet")]
    if m is not None:
        acc, lat = m.accuracy, m.latency
        rows += [("data", f"{m.data} (test split, n={acc.get('n')})"), ("recipe", m.recipe),
                 ("accuracy fp32 / int8 (TVM)", f"{_pct(acc.get('fp32'))} / {_pct(acc.get('int8_tvm'))}"),
                 ("latency int8", f"median {lat['median_ms']:.4f} ms, p90 {lat['p90_ms']:.4f} ms, n={lat['n']}" if lat else "not measured"),
                 ("measured how / where", m.latency_how + (f"; device: {lat.get('device')}" if lat else "")),
                 ("search cost", f"{m.search_cost_s:.0f} s (op table profiling + search + feedback measurements)"
                  + (f": {cost_line(m.search_cost)}" if getattr(m, "search_cost", None) else "")),
                 ("software", ", ".join(f"{k} {v}" for k, v in m.software.items() if k != "platform"))]
    else:
        rows.append(("status", "run not finished: sections below show what exists so far"))
    if view.stage_seconds:
        rows.append(("stage seconds", ", ".join(f"{k} {v:.0f}" for k, v in view.stage_seconds.items())))
    if m is not None:
        from ..build.manifest import result_warnings
        from ..build.rundir import RunDir

        rows += [("warning", w) for w in result_warnings(m, RunDir(view.run).journal_file)]
    collapsed = [rv.index for rv in view.rounds if rv.collapse]
    if collapsed:  # details beside the α trajectories
        rows.append(("search collapse", f"warning in round(s) {', '.join(map(str, collapsed))}: see Search below"))
    return rows


def _predictor(p: dict | None) -> str:
    if not p or not p.get("n_points"):
        return "op-table sum as is (no measurements yet)"
    err = p.get("loo_mape", p.get("mean_abs_pct_err"))
    fit = f"{p.get('kind', 'affine')}: {p.get('scale', 1.0):.3f}·sum {p.get('offset_ms', 0.0):+.4f} ms"
    return fit + f", {p['n_points']} points" + (f", error {err:.1f} %" if err is not None else "")


def rounds_table(view: RunView) -> str:
    """ONE row per round: the chosen model's predicted vs measured latency and the budget."""
    rows = []
    for rv in view.rounds:
        s, p = rv.summary or {}, rv.predictor
        chosen = next((r for r in rv.measured if r.get("chosen")), {})
        arch = rv.arch or ""
        met = s.get("budget_met")
        rows.append([
            _td(rv.index, num=True),
            _td(f"<code>{escape(str(arch))}</code>" if arch else '<span class="na">searching</span>', raw=True),
            _td(_ms(chosen.get("table_ms")), num=True, raw=True),
            _td(_ms(s.get("predicted_ms")), num=True, raw=True),
            _td(_ms(s.get("calibrated_ms", s.get("measured_ms"))), num=True, raw=True),
            _td(f"{s['pred_err_pct']:.1f} %" if "pred_err_pct" in s else "-", num=True),
            _td(_ms(s.get("budget_ms")), num=True, raw=True),
            _td('<span class="na">-</span>' if met is None else ('<span class="ok">met</span>' if met else '<span class="bad">not met</span>'), raw=True),
            _td(_predictor(p)),
            _td(len(rv.measured), num=True),
        ])
    head = ["round", "chosen architecture", "op-table sum (ms)", "predicted (ms)", "measured (ms)", "predictor error",
            "budget (ms)", "budget", "predictor (fit on earlier rounds)", "candidates measured"]
    return _table(head, rows, attrs='id="rounds"', row_class="round")


def compile_section(view: RunView) -> str:
    m = view.manifest
    if m is None:
        return '<p class="na">Not compiled yet.</p>'
    comp = m.compile
    ops = ", ".join(f"{k} ×{v}" for k, v in (comp.get("int8_ops") or {}).items()) or "none"
    falls = comp.get("fallbacks") or []
    out = f"<p>Integer kernels in the TVM library: <b>{escape(ops)}</b>. "
    out += (f"Tuning records applied: {comp.get('db_records', 0)}" if comp.get("tuned") else "No tuning records applied (untuned kernels)")
    out += f"; compile {comp.get('seconds', 0):.1f} s.</p>"
    if not falls:
        return out + '<p class="ok">Nothing fell back to float: every conv / dense runs as int8 with int32 accumulation.</p>'
    rows = [[_td(describe(f))] for f in falls]
    return out + "<p>Fell back to float (Q/DQ kept around a float op):</p>" + _table(["op and reason"], rows, 'id="fallbacks"')


def parity_section(view: RunView) -> str:
    m = view.manifest
    if m is None or not m.parity:
        return ""
    rows = [[_td(p.get("reference")), _td(p.get("candidate")), _td(f"{p.get('max_abs_err', 0):.3g}", num=True),
             _td(f"{p.get('top1_agreement', 0) * 100:.1f} %", num=True), _td(p.get("n"), num=True)] for p in m.parity]
    return _table(["reference", "candidate", "max |err|", "top-1 agreement", "n"], rows)


def _pm(mean, std, fmt: str, scale: float = 1.0, unit: str = "") -> str:
    if not isinstance(mean, (int, float)):
        return "–"
    return f"{mean * scale:{fmt}}" + (f" ± {std * scale:{fmt}}" if isinstance(std, (int, float)) and std else "") + unit


BASELINE_KINDS = {"searched": "searched (benchmark)", "random": "random search", "sweep": "hand-designed"}
NO_BASELINES = ('<p class="na" id="no-baselines">No baselines in this run directory, so the searched model stands '
                'alone here. Produce them (random search at the same space, budget and compute, the hand-designed '
                'width sweep, and the searched arms, each over 3 seeds) with <code>python scripts/bench_search.py '
                '--out DIR</code> and add them with <code>edgenas report RUN --baselines DIR/baselines.json</code>.'
                ' The benchmark also writes them to this host\'s <code>tuning_logs/&lt;target&gt;/baselines.json</code>, '
                'where every later report for that target finds them.</p>')


def baselines_section(view: RunView) -> str:
    """The searched model beside random search and the hand-designed sweep (``baselines.json``)."""
    if not view.baselines:
        return NO_BASELINES
    m = view.manifest
    rows = []
    if m is not None and m.latency:
        acc = m.accuracy.get("int8_tvm", m.accuracy.get("int8_onnx"))
        rows.append([_td("this run"), _td("searched model of this run"), _td(_pm(m.latency.get("median_ms"), 0, ".4f"),
                     num=True), _td(_pm(acc, 0, ".2f", 100, " %"), num=True),
                     _td(_pm(m.accuracy.get("fp32"), 0, ".2f", 100, " %"), num=True),
                     _td(_pm(m.search_cost_s, 0, ".0f"), num=True), _td(1, num=True)])
    for b in view.baselines:
        rows.append([_td(BASELINE_KINDS.get(b.get("kind"), b.get("kind") or "baseline")), _td(b["name"]),
                     _td(_pm(b.get("latency_ms"), b.get("latency_std"), ".4f"), num=True),
                     _td(_pm(b.get("accuracy"), b.get("accuracy_std"), ".2f", 100, " %"), num=True),
                     _td(_pm(b.get("fp32_accuracy"), b.get("fp32_accuracy_std"), ".2f", 100, " %"), num=True),
                     _td(_pm(b.get("search_s"), b.get("search_s_std"), ".0f"), num=True),
                     _td(b.get("seeds", "–"), num=True)])
    settings = sorted({b["setting"] for b in view.baselines if b.get("setting")})
    seeds = sorted({b["seeds"] for b in view.baselines if isinstance(b.get("seeds"), int)})
    over = f" over {' / '.join(map(str, seeds))} seed{'s' if seeds != [1] else ''}" if seeds else " over the seeds"
    shared = view.baselines_from is not None and Path(view.baselines_from) != view.run / RUN_FILE
    source = (f"<p>Baselines from <code>{escape(view.baselines_from)}</code>"
              + (" (this host's latest <code>scripts/bench_search.py</code> results for the target; "
                 "<code>edgenas report RUN --baselines FILE</code> pins others to this run)" if shared else "")
              + ".</p>") if view.baselines_from else ""
    note = ("<p>Baselines measured in: " + "; ".join(f"<code>{escape(x)}</code>" for x in settings) +
            f". Mean ± sample std{over}; compare this run's model with them only when the setting "
            "(data, input size, target) is the same.</p>") if settings else f"<p>Mean ± sample std{over}.</p>"
    differs = ('<p class="bad" id="baselines-mismatch">Not the setting of this run, so not comparable with its '
               "model: " + "; ".join(escape(x) for x in view.baselines_mismatch) + ".</p>") if view.baselines_mismatch else ""
    return "<h3>Searched vs random search vs hand-designed</h3>" + differs + _table(
        ["", "model", "INT8 latency ms", "int8 test accuracy", "fp32 test accuracy", "search s", "seeds"], rows,
        'id="baselines"') + source + note


def collapse_section(view: RunView) -> str:
    """DARTS collapse: each round's warning (search.collapse) and the per-epoch share of
    parameter-free ops in softmax(α) and in the derived architecture, beside the α trajectories."""
    out = "".join(f'<p class="bad" id="collapse-r{rv.index}">Round {rv.index}: {escape(rv.collapse)}</p>'
                  for rv in view.rounds if rv.collapse)
    rows = [[_td(rv.index, num=True), _td(row["epoch"], num=True), _td(_pct(row["skip_share_probs"]), num=True),
             _td(_pct(row["skip_share_arch"]), num=True)]
            for rv in view.rounds for row in skip_share_series(rv.history)]
    if not rows:
        return out
    return out + (f"<p>Share of parameter-free ops (skip) per search epoch; a share above "
                  f"{DEFAULT_THRESHOLD:.0%} at any epoch is reported as a collapse.</p>") + _table(
        ["round", "epoch", "softmax(α) on skip", "derived architecture: skip layers"], rows, 'id="skip-share"')


def page(view: RunView, figs: dict[str, bytes | None]) -> str:
    title = f"edgenas report: {view.run.name}"
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    summary = _table(["", ""], [[_td(k), _td(v)] for k, v in summary_rows(view)], 'id="summary"')
    base = baselines_section(view)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title><style>{CSS}</style></head>
<body>
<h1>{escape(title)}</h1><p class="sub">generated {when} by <code>edgenas report</code></p>
{summary}
<h2 id="pareto">Accuracy vs measured latency</h2>
{img(figs.get("pareto"), "Pareto plot")}{base}
<h2>Rounds: predicted vs measured latency of the chosen model</h2>
{rounds_table(view)}
{img(figs.get("rounds"), "predicted vs measured latency")}
<h2>Chosen architecture</h2>
{img(figs.get("arch"), "architecture diagram")}
<h2>INT8 vs FP32</h2>
<div class="grid"><div>{img(figs.get("accuracy"), "accuracy chart")}</div><div>{parity_section(view)}</div></div>
<h2>Per-op latency on the target</h2>
{img(figs.get("op_latency"), "per-op latency")}
<h2>What fell back to float</h2>
{compile_section(view)}
<h2 id="search">Search: α trajectories and the collapse signal</h2>
{img(figs.get("alphas"), "alpha trajectories")}
{collapse_section(view)}
</body></html>
"""
