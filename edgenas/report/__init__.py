"""``write_report(run_dir)``: ``RUN_DIR/report.html`` plus its figures as ``RUN_DIR/report/*.png``.

The page is what a user reads to decide whether a model is worth shipping, so it is built only
from the run's own files (``collect.py``) and can be regenerated at any time, for finished and
unfinished runs alike (``edgenas report RUN_DIR``). Figures are written as PNG files and embedded
in the page, so the HTML opens offline and the PNGs drop into slides or tickets.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from .. import fsio

FIGURES = ("pareto", "rounds", "arch", "accuracy", "op_latency", "alphas")


def _png(fig) -> bytes | None:
    if fig is None:
        return None
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def render_figures(view) -> dict[str, bytes | None]:
    from . import plots
    from .diagram import arch_diagram

    makers = {"pareto": plots.pareto, "rounds": plots.rounds_scatter,
              "arch": lambda v: arch_diagram(v.arch, v.stage_of_layer), "accuracy": plots.accuracy,
              "op_latency": plots.op_breakdown, "alphas": plots.alpha_trajectories}
    return {name: _png(makers[name](view)) for name in FIGURES}


def write_report(run_dir: str | os.PathLike) -> Path:
    """Write ``report.html`` and ``report/<figure>.png`` into ``run_dir``; returns the HTML path."""
    from ..build.rundir import RunDir
    from .collect import collect
    from .html import page

    run = RunDir.read(run_dir).path
    from ..build.rundir import MULTI

    if (run / MULTI).is_file():   # a multi-target build: its fronts side by side (report/multi.py)
        from .multi import write_multi_report

        return write_multi_report(run)
    view = collect(run)
    figs = render_figures(view)
    for name, png in figs.items():
        target = run / "report" / f"{name}.png"
        if png is not None:
            fsio.write_bytes(target, png)
        elif target.exists():  # a figure that no longer applies must not linger beside a new page
            target.unlink()
    return fsio.write_text(run / "report.html", page(view, figs))


__all__ = ["write_report", "FIGURES"]
