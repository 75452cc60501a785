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
    runs: Optional[List[Path]] = typer.Argument(None, help="Bundles (edgenas package; verified before they are measured) "
                                                "or run directories (their model_<target>.so). Default: the benchmark model set."),
    target: str = typer.Option("x86-avx2", "--target", "-t", help="Target name or TOML path."),
    baseline: Path = typer.Option(..., "--baseline", help="Baseline JSON (e.g. tuning_logs/x86-avx2/baseline.json); missing: "
                                  "these measurements are recorded as the baseline, not gated."),
    tolerance: str = typer.Option("10%", "--tolerance", help="Allowed slow-down before a model counts as a regression, e.g. 10% or 0.1."),
    update_baseline: bool = typer.Option(False, "--update-baseline", help="Write these measurements as the new baseline (atomically)."),
    tracker: Optional[str] = typer.Option(None, "--tracker", help="Measure on a device farm: tracker HOST:PORT."),
    key: Optional[str] = typer.Option(None, "--key", help="Device key on the tracker (default: the target's rpc_key)."),
    trusted_key: Optional[List[Path]] = typer.Option(None, "--trusted-key", help="Public key (PEM) a bundle must be "
                                                     "signed with (repeatable); without, bundles are checked for integrity only."),
):
    """Latency regression gate: measure artifacts and fail (exit 1) on slow-downs beyond --tolerance.

    Examples:\n
      edgenas bench artifacts/bundles/x86-avx2 --target x86-avx2 --baseline tuning_logs/x86-avx2/baseline.json\n
      edgenas bench artifacts/bundles/rpi4 --target rpi4 --baseline tuning_logs/rpi4/baseline.json --tracker H:P --key rpi4
    """
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
        items = _bench_items(runs, spec, trusted_key) if runs else model_set(spec, Path(tmp))
        report = run_bench(items, spec, baseline, tolerance=tol, farm=farm, record_missing=not update_baseline)
    out.print(bench_table(report))
    if update_baseline:
        typer.echo(f"baseline written: {write_baseline(report, baseline)}")
    elif not report.passed:
        names = ", ".join(r.name for r in report.regressions)
        raise EdgenasError(f"{len(report.regressions)} latency regression(s) beyond {tol:.0%}: {names}")


def _bench_items(paths: List[Path], spec, trusted_key: Optional[List[Path]]) -> list:
    """Bundles become ``BenchItem``s of their verified library (named by the bundle folder, so the
    workflow's ``bundles/<target>`` is one baseline entry run after run); run directories pass on."""
    from .. import records
    from ..bundle.signing import load_public
    from ..bundle.verify import is_bundle, verified_library
    from ..errors import UsageError
    from ..measure.gate import BenchItem
    from ..space.arch import Arch

    trusted = [load_public(p) for p in trusted_key] if trusted_key else []
    items: list = []
    for p in paths:
        if not is_bundle(p):
            items.append(p)
            continue
        manifest, lib = verified_library(p, trusted)
        if manifest.target != spec.name:
            raise UsageError(f"{p}: a bundle for target {manifest.target!r}, not {spec.name!r}")
        items.append(BenchItem(p.resolve().name, str(lib), records.load(p / "arch.json", Arch).input_shape))
    return items


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
