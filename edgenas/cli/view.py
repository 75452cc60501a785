"""Rendering for the CLI: the progress reporters (rich bars on a terminal, timestamped lines in a
log) and the tables. Imported only by commands.

The only place besides the command modules that imports rich: the library hands back records
(``BenchReport``, ``FarmStatus``, manifests) and these functions draw them.
"""

from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..build.cost import cost_line
from ..build.manifest import round_line
from ..build.progress import Reporter

console = Console(stderr=True)
out = Console()


class RichReporter(Reporter):
    """One progress bar per stage, with the stage's latest note beside it."""

    @contextmanager
    def stage(self, name, total=None):
        cols = [SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TextColumn("{task.fields[note]}", style="dim")]
        with Progress(*cols, console=console, transient=False) as prog:
            task = prog.add_task(name, total=total, note="")

            def advance(n=1, note=""):
                prog.update(task, advance=n, note=note)

            yield advance
            if total is not None:
                prog.update(task, completed=total)

    def info(self, message):
        console.print(f"[cyan]•[/] {message}")

    def warn(self, message):
        console.print(f"[yellow]warning:[/] {message}")


class PlainReporter(Reporter):
    """Timestamped plain lines for logs (CI, a pipe, a file): a bar redrawn in place comes out of a
    log truncated ("━━ 6… 0…"), and a stage that never advances shows nothing at all. Each stage
    prints a start line, a progress line at least every ``period_s`` while it runs (from a
    heartbeat thread, so a long stage with no steps still says it is alive), and an end line.

    Progress goes to stdout: a failing command's stderr stays its one error line (app.handled).
    Notes and warnings stay on stderr, as on a terminal."""

    def __init__(self, stream=None, period_s: float = 30.0):
        self.stream, self.period_s = stream or sys.stdout, period_s
        self._lock = threading.Lock()

    def _line(self, text: str, stream=None) -> None:
        with self._lock:
            print(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {text}", file=stream or self.stream, flush=True)

    @contextmanager
    def stage(self, name, total=None):
        t0 = time.monotonic()
        state = {"done": 0, "note": "", "last": t0}
        of = f"/{total}" if total is not None else ""

        def progress(now: float) -> None:
            note = f" {state['note']}" if state["note"] else ""
            self._line(f"{name}: {state['done']}{of}, {now - t0:.0f} s{note}")
            state["last"] = now

        def advance(n=1, note=""):
            state["done"] += n
            state["note"] = note or state["note"]
            now = time.monotonic()
            if now - state["last"] >= self.period_s:
                progress(now)

        stop = threading.Event()

        def heartbeat():
            while not stop.wait(max(0.05, self.period_s - (time.monotonic() - state["last"]))):
                if time.monotonic() - state["last"] >= self.period_s:
                    progress(time.monotonic())

        self._line(f"{name}: start" + (f" ({total} steps)" if total is not None else ""))
        beat = threading.Thread(target=heartbeat, name="edgenas-progress", daemon=True)
        beat.start()
        try:
            yield advance
        except BaseException:
            stop.set()
            self._line(f"{name}: stopped after {time.monotonic() - t0:.1f} s")
            raise
        finally:
            stop.set()
            beat.join()
        done = total if total is not None else state["done"]
        self._line(f"{name}: end, {done}{of} in {time.monotonic() - t0:.1f} s")

    def info(self, message):
        self._line(message, sys.stderr)

    def warn(self, message):
        self._line(f"warning: {message}", sys.stderr)


def reporter() -> Reporter:
    """Bars on a terminal, timestamped plain lines anywhere else (docs/ci.md)."""
    return RichReporter() if console.is_terminal else PlainReporter()


def kv_table(title: str, rows: list[tuple[str, str]]) -> Table:
    t = Table(title=title, show_header=False, title_justify="left")
    t.add_column(style="bold", overflow="fold")
    t.add_column(overflow="fold")
    for k, v in rows:
        t.add_row(k, v)
    return t


def targets_table(specs) -> Table:
    t = Table(title="edgenas targets (targets/*.toml)", title_justify="left")
    t.add_column("name", no_wrap=True)  # whole at 80 columns too (x86-avx512-vnni): the others fold
    for col in ("kind", "cpu / gpu", "arch", "cross compiler", "reached by", "int8"):
        t.add_column(col, overflow="fold")
    for s in specs:
        reach = "local CPU" if s.runner == "local" else (f"RPC key {s.rpc_key}" if s.runner == "rpc" else "compile only")
        chip = s.tvm_target.get("mcpu") or s.tvm_target.get("arch", "-")
        t.add_row(s.name, s.tvm_target["kind"], str(chip), s.arch, s.cross_compiler or "-", reach, s.int8_dot)
    return t


def build_summary(m, run_dir) -> Table:
    lat = m.latency or {}
    acc = m.accuracy
    rows = [
        ("architecture", m.arch),
        ("target", m.target),
        ("data", f"{m.data} (test split, n={acc.get('n')})"),
        ("accuracy fp32", f"{acc['fp32'] * 100:.2f} %"),
        ("accuracy int8 (brevitas / onnx / tvm)",
         f"{acc['int8_brevitas'] * 100:.2f} % / {acc['int8_onnx'] * 100:.2f} % / {acc['int8_tvm'] * 100:.2f} %"),
        ("latency int8 (median / p90, n)",
         f"{lat.get('median_ms', float('nan')):.4f} ms / {lat.get('p90_ms', float('nan')):.4f} ms, n={lat.get('n')}" if lat else "not measured"),
        ("int8 ops in TVM", ", ".join(f"{k}×{v}" for k, v in (m.compile.get("int8_ops") or {}).items()) or "none"),
        ("search cost", f"{m.search_cost_s:.0f} s" + (f" ({cost_line(m.search_cost)})" if m.search_cost else "")),
    ]
    for r in m.rounds:
        rows.append((f"round {r['round']}", round_line(r)))
    for name in sorted(m.files):
        rows.append(("artifact", str(run_dir / name)))
    rows.append(("report", str(run_dir / "report.html")))
    rows.append(("bundle", str(run_dir / m.target) + "  (edgenas verify checks it)"))
    from ..build.manifest import result_warnings
    from ..build.rundir import RunDir

    for w in result_warnings(m, RunDir(run_dir).journal_file):
        rows.append(("[yellow]warning[/]", w))
    return kv_table("edgenas build", rows)


def bench_table(report) -> Table:
    """The regression gate's report (``measure.gate.BenchReport``), regressions first."""
    from ..measure.gate import bench_rows

    table = Table(title=f"latency vs {report.baseline_file} (tolerance {report.tolerance:.0%}, target {report.target})")
    rows = bench_rows(report)
    for col in (rows[0] if rows else {"model": ""}):
        table.add_column(col, justify="right" if col.endswith("ms") or col == "change" else "left")
    style = {"regression": "bold red", "faster": "green", "new": "cyan", "ok": ""}
    for r in rows:
        table.add_row(*r.values(), style=style[r["status"]])
    table.caption = report.summary()
    return table


def status_table(status) -> Table:
    """A farm's status (``measure.farm_status.FarmStatus``): one row per key, the server addresses last."""
    from ..measure.farm_status import status_rows

    table = Table(title=f"device farm at {status.tracker}")
    for col in ("key", "servers", "free", "busy", "queued", "addresses"):
        table.add_column(col, justify="right" if col in ("servers", "free", "busy", "queued") else "left")
    for row in status_rows(status):
        addrs = ", ".join(a for a, k in status.servers if k == row["key"])
        table.add_row(row["key"], *(str(row[c]) for c in ("servers", "free", "busy", "queued")), addrs or "-")
    if not status.keys:
        table.caption = "no servers registered"
    return table
