"""``edgenas measure`` (re-measure a run's library) and ``edgenas bench`` (the latency regression
gate, ``measure.gate``), here or on a device farm."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .app import app, handled


@app.command()
@handled
def bench(
    runs: Optional[List[Path]] = typer.Argument(None, help="Run directories to bench (their model_<target>.so). Default: the benchmark model set."),
    target: str = typer.Option("x86-avx2", "--target", "-t", help="Target name or TOML path."),
    baseline: Path = typer.Option(..., "--baseline", help="Baseline JSON (e.g. tuning_logs/x86-avx2/baseline.json); missing: every model is new."),
    tolerance: str = typer.Option("10%", "--tolerance", help="Allowed slow-down before a model counts as a regression, e.g. 10% or 0.1."),
    update_baseline: bool = typer.Option(False, "--update-baseline", help="Write these measurements as the new baseline (atomically)."),
    tracker: Optional[str] = typer.Option(None, "--tracker", help="Measure on a device farm: tracker HOST:PORT."),
    key: Optional[str] = typer.Option(None, "--key", help="Device key on the tracker (default: the target's rpc_key)."),
):
    """Latency regression gate: measure artifacts and fail (exit 1) on slow-downs beyond --tolerance."""
    import tempfile

    from ..errors import EdgenasError
    from ..measure.gate import bench as run_bench, model_set, update_baseline as write_baseline
    from ..target import get_target
    from .options import farm_from_options, parse_tolerance
    from .view import bench_table, out

    tol = parse_tolerance(tolerance)
    spec = get_target(target)
    farm = farm_from_options(tracker, key, spec)
    with tempfile.TemporaryDirectory(prefix="edgenas-bench-") as tmp:
        items = list(runs) if runs else model_set(spec, Path(tmp))
        report = run_bench(items, spec, baseline, tolerance=tol, farm=farm)
    out.print(bench_table(report))
    if update_baseline:
        typer.echo(f"baseline written: {write_baseline(report, baseline)}")
    elif not report.passed:
        names = ", ".join(r.name for r in report.regressions)
        raise EdgenasError(f"{len(report.regressions)} latency regression(s) beyond {tol:.0%}: {names}")


@app.command()
@handled
def measure(
    run: Path = typer.Argument(..., help="Run directory (holds arch.json and model_<target>.so)."),
    target: Optional[str] = typer.Option(None, "--target", "-t", help="Which library to measure (default: the run's target)."),
    repeat: int = typer.Option(50, "--repeat", help="Minimum timed samples (the protocol adds more until the median is stable)."),
    tracker: Optional[str] = typer.Option(None, "--tracker", help="Measure on a device farm: tracker HOST:PORT."),
    key: Optional[str] = typer.Option(None, "--key", help="Device key on the tracker (default: the target's rpc_key)."),
):
    """Re-measure a run's compiled library, locally or on a device of the farm; the measurement, with
    the machine's load, is appended to the run's measurements.jsonl."""
    from ..build.rundir import RunDir
    from ..errors import UsageError
    from ..measure.runners import LocalRunner, runner_for
    from ..target import get_target
    from .options import farm_from_options
    from .view import kv_table, out

    rd = RunDir.read(run, finished=True)
    manifest = rd.manifest()
    spec = get_target(target) if target else None
    name = spec.name if spec else manifest.target
    lib = rd.library(name)
    if not lib.is_file():
        raise UsageError(f"{lib} does not exist; compile it with `edgenas package {run} --target {target or name}`")
    if spec is None and tracker:   # the farm's default key comes from the run's target file
        spec = get_target(manifest.target)
    farm = farm_from_options(tracker, key, spec)
    # without --target, the run's own library on this host (its target file may be anywhere)
    runner = runner_for(spec, farm) if spec is not None else LocalRunner.here(name, manifest.target_dict)
    journal = rd.journal_file
    stats = runner.measure(lib, rd.input_shape(), min_samples=repeat, journal=journal).stats
    load = stats.context.describe() if stats.context else "not observable on a farm device (TVM RPC does not expose it)"
    out.print(kv_table(f"edgenas measure {lib.name}", [
        ("median", f"{stats.median_ms:.4f} ms"), ("p90", f"{stats.p90_ms:.4f} ms"), ("n", str(stats.n)),
        ("threads", str(stats.threads)), ("where", stats.where), ("device", stats.device), ("machine load", load),
        ("journal", f"appended to {journal}")]))
