"""Latency regression gate: measure compiled artifacts and compare them with a stored baseline.

``bench`` measures each artifact (the library in a run directory, or a model of the benchmark
set) with the measurement protocol, on this CPU or through a farm, and compares its median with
the baseline's. A model slower than ``baseline * (1 + tolerance)`` is re-measured once and the
faster of the two medians kept — noise on a shared machine only ever adds time — so a
regression is reported only when it survives a second look. ``update_baseline`` writes the
measured medians as the new baseline atomically.

Without a baseline file nothing can be gated: ``bench(..., record_missing=True)`` (what
``edgenas bench`` does) writes the measurements as the baseline and the report says "no
baseline: recorded, not gated", never "within 10 %". Where the baseline lives so that a CI
workflow keeps it between runs is docs/ci.md.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import records
from ..errors import UsageError
from ..records import record
from ..versions import software_versions
from .protocol import Measurement, Protocol


@record("baseline_entry")
@dataclass(frozen=True)
class BaselineEntry:
    median_ms: float
    p90_ms: float
    ci_ms: tuple[float, float]
    where: str
    library_sha256: str
    measured_at: float


@record("latency_baseline")
@dataclass(frozen=True)
class Baseline:
    target: str
    entries: dict[str, BaselineEntry] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    updated_at: float = 0.0


@dataclass(frozen=True)
class BenchItem:
    name: str
    library: str
    input_shape: tuple[int, ...]


@dataclass(frozen=True)
class BenchRow:
    name: str
    baseline_ms: float | None
    measured_ms: float
    change_pct: float | None
    status: str            # "ok", "regression", "faster" (beyond tolerance), "new" (not in the baseline)
    ci_ms: tuple[float, float]
    where: str


@dataclass(frozen=True)
class BenchReport:
    target: str
    baseline_file: str
    baseline_found: bool
    tolerance: float
    rows: tuple[BenchRow, ...]
    measurements: tuple[Measurement, ...]
    recorded: bool = False     # no baseline was found, and these measurements were written as it

    @property
    def regressions(self) -> list[BenchRow]:
        return [r for r in self.rows if r.status == "regression"]

    @property
    def passed(self) -> bool:
        return not self.regressions

    def summary(self) -> str:
        """One line: what the gate says."""
        if not self.baseline_found:
            return (f"no baseline: recorded, not gated ({len(self.rows)} models written to {self.baseline_file}; "
                    f"the next run is gated against it)" if self.recorded else "no baseline: not gated")
        new = sum(r.status == "new" for r in self.rows)
        if new:
            return (f"{len(self.rows) - new} models within {self.tolerance:.0%} of {self.baseline_file}, "
                    f"{new} new (not in the baseline: not gated)") if self.passed else self._failed()
        if self.passed:
            return f"{len(self.rows)} models within {self.tolerance:.0%} of {self.baseline_file}"
        return self._failed()

    def _failed(self) -> str:
        worst = ", ".join(f"{r.name} ({r.change_pct:+.1f} %)" for r in self.regressions)
        return f"{len(self.regressions)} of {len(self.rows)} models regressed beyond {self.tolerance:.0%}: {worst}"


def resolve_items(run_dirs_or_models, target) -> list[BenchItem]:
    """Run directories (their library for ``target``, input shape from the chosen arch) and/or items."""
    from ..build.rundir import RunDir

    items = []
    for entry in run_dirs_or_models:
        if isinstance(entry, BenchItem):
            items.append(entry)
            continue
        run = RunDir(entry)
        lib = run.library(target.name)
        if not lib.is_file() or not run.arch_file.is_file():
            raise UsageError(f"{run.path}: not a finished run for target {target.name!r} "
                             f"(needs {lib.name} and {run.arch_file.name})")
        items.append(BenchItem(run.path.name, str(lib), run.input_shape()))
    names = [i.name for i in items]
    if len(set(names)) != len(names):
        raise UsageError(f"two artifacts share a name ({', '.join(sorted({n for n in names if names.count(n) > 1}))}); "
                         "name run directories uniquely")
    return items


def load_baseline(path, target_name: str) -> Baseline | None:
    p = Path(path)
    if not p.exists():
        return None
    base = records.load(p, Baseline)
    if base.target != target_name:
        raise UsageError(f"{p} is a baseline for target {base.target!r}, not {target_name!r}")
    return base


def bench(run_dirs_or_models, target, baseline_file, tolerance: float = 0.10, farm=None,
          protocol: Protocol | None = None, repeat: int = 30, record_missing: bool = False) -> BenchReport:
    """Measure every artifact on ``target`` (a ``TargetSpec``; through ``farm`` when given) and
    compare it with ``baseline_file`` (missing file: all "new", and with ``record_missing`` the
    measurements become the baseline)."""
    from .runners import runner_for

    spec = target
    if not 0 < tolerance < 10:
        raise UsageError(f"--tolerance must be a positive fraction such as 0.10 (got {tolerance})")
    if farm is None and not spec.measurable_locally:
        raise UsageError(f"target {spec.name!r} is measured on a device: pass --tracker HOST:PORT --key "
                         f"{spec.rpc_key or spec.name}")
    items = resolve_items(run_dirs_or_models, spec)
    if not items:
        raise UsageError("nothing to bench: give run directories or use the benchmark model set")
    base = load_baseline(baseline_file, spec.name)
    proto = protocol or Protocol()
    runner = runner_for(spec, farm)

    def measure(item: BenchItem) -> Measurement:
        return runner.measure(item.library, item.input_shape, min_samples=repeat, protocol=proto)

    rows, kept = [], []
    for item in items:
        m = measure(item)
        ref = base.entries.get(item.name) if base else None
        if ref is not None and m.stats.median_ms > ref.median_ms * (1 + tolerance):
            again = measure(item)
            m = min(m, again, key=lambda x: x.stats.median_ms)
        kept.append(m)
        rows.append(_row(item.name, m, ref, tolerance))
    report = BenchReport(spec.name, os.fspath(baseline_file), base is not None, tolerance, tuple(rows), tuple(kept))
    if base is None and record_missing:
        update_baseline(report)
        report = dataclasses.replace(report, recorded=True)
    return report


def _row(name: str, m: Measurement, ref: BaselineEntry | None, tol: float) -> BenchRow:
    med = m.stats.median_ms
    if ref is None:
        return BenchRow(name, None, med, None, "new", m.ci_ms, m.device_id)
    change = (med / ref.median_ms - 1) * 100
    status = "regression" if change > tol * 100 else "faster" if change < -tol * 100 else "ok"
    return BenchRow(name, ref.median_ms, med, change, status, m.ci_ms, m.device_id)


def update_baseline(report: BenchReport, baseline_file=None) -> Path:
    """Write the report's measurements as the baseline (entries not benched are kept), atomically."""
    path = Path(baseline_file or report.baseline_file)
    old = load_baseline(path, report.target)
    entries = dict(old.entries) if old else {}
    for row, m in zip(report.rows, report.measurements):
        entries[row.name] = BaselineEntry(m.stats.median_ms, m.stats.p90_ms, m.ci_ms, m.device_id,
                                          m.library_sha256, m.measured_at)
    records.save(path, Baseline(report.target, entries, software_versions(), time.time()))
    return path


def bench_rows(report: BenchReport) -> list[dict]:
    """Display rows (strings), regressions first."""
    order = {"regression": 0, "faster": 1, "new": 2, "ok": 3}
    out = []
    for r in sorted(report.rows, key=lambda r: (order[r.status], r.name)):
        out.append({"model": r.name, "baseline ms": "-" if r.baseline_ms is None else f"{r.baseline_ms:.4f}",
                    "measured ms": f"{r.measured_ms:.4f}", "95% CI": f"{r.ci_ms[0]:.4f}-{r.ci_ms[1]:.4f}",
                    "change": "-" if r.change_pct is None else f"{r.change_pct:+.1f} %", "status": r.status,
                    "where": r.where})
    return out


def model_set(target, work_dir, recipe: str = "int8-per-channel") -> list[BenchItem]:
    """The benchmark model set: three fixed INT8 architectures of the default space (every layer
    its fewest-MACs op, a mixed net, every layer its most-MACs op), compiled afresh for ``target``
    the way every measured latency of a build is (``latency.profile``: untrained calibrated weights
    exported QCDQ, then ``compile_onnx`` with the target's tuning database), so a compiler or tuning
    change shows up here."""
    from ..compile import compile_onnx
    from ..latency.profile import export_op
    from ..quantize.recipe import for_target, get_recipe
    from ..space.arch import SpaceConfig, arch_from_choices
    from ..space.cost import op_cost
    from ..space.supernet import FrozenNet

    space, work, rec = SpaceConfig(), Path(work_dir), for_target(get_recipe(recipe), target)  # the build's weight width
    work.mkdir(parents=True, exist_ok=True)
    ranked = []
    for i, ((cin, cout, stride), hw) in enumerate(zip(space.positions(), space.spatial_sizes())):
        cost = {c: (op_cost(c[0], cin, cout, stride, hw).macs if c[0] != "skip" else 0.0) for c in space.candidates(i)}
        ranked.append(sorted(space.candidates(i), key=lambda c: (cost[c], c)))
    picks = {"bench-small": [r[0] for r in ranked], "bench-mixed": [r[len(r) // 2] for r in ranked],
             "bench-large": [r[-1] for r in ranked]}
    items = []
    for name, choices in picks.items():
        arch = arch_from_choices(space, choices)
        shape = arch.input_shape
        onnx_path = export_op(FrozenNet(arch), rec, shape, work)
        res = compile_onnx(onnx_path, target, work / f"{name}_{target.name}.so", int8=True, trials=0)
        items.append(BenchItem(name, res.library, shape))
    return items
