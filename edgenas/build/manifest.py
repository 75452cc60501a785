"""The run manifest: what was built, from what, with which software, and how good and fast it is.

Every artifact is listed with its sha256 so that ``edgenas verify`` can detect a changed byte.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..fsio import sha256_file
from ..records import record
from ..versions import software_versions

SCHEMA_VERSION = 1


def hash_files(root: Path, names: list[str]) -> dict[str, str]:
    return {n: sha256_file(root / n) for n in names if (root / n).exists()}


@record("manifest")
@dataclass(frozen=True)
class Manifest:
    schema_version: int
    target: str
    target_dict: dict
    arch: str
    data: str
    seed: int
    recipe: str
    accuracy: dict                    # {"fp32": .., "int8_brevitas": .., "int8_onnx": .., "int8_tvm": ..} on the test split
    latency: dict | None              # LatencyStats as dict, or None when the target was compile-only
    latency_how: str
    parity: tuple[dict, ...]
    compile: dict
    rounds: tuple[dict, ...]
    stage_seconds: dict
    search_cost_s: float
    files: dict[str, str]             # name -> sha256
    software: dict[str, str] = field(default_factory=software_versions)
    search_cost: dict = field(default_factory=dict)   # device-hours per device type, processes, speed-up bound (build/cost.py)


def round_line(r: dict) -> str:
    """One feedback round of ``Manifest.rounds`` as the build prints it, while it runs and in
    the summary (one wording, so logs and summaries can be grepped alike)."""
    line = (f"predicted {r['predicted_ms']:.3f} ms, measured {r.get('calibrated_ms', r['measured_ms']):.3f} ms "
            f"(error {r['pred_err_pct']:.1f} %), budget {r['budget_ms']:.3f} ms {'met' if r['budget_met'] else 'NOT met'}")
    if "heldout_before" in r:
        b, a = r["heldout_before"], r["heldout_after"]
        line += (f"; held-out {b['n']}: error {b['mape']:.1f} % -> {a['mape']:.1f} % after the refit ({r['refit_kind']}), "
                 f"within ±10 % {b['within10']:.0f} -> {a['within10']:.0f} %, Kendall τ {b['kendall_tau']:.2f} -> "
                 f"{a['kendall_tau']:.2f}")
    if r.get("windows"):
        line += f"; {r['discarded_windows']} of {r['windows']} measurement windows discarded for interference"
    return line


CHANCE_FACTOR = 1.5   # an accuracy below 1.5x chance (15 % on 10 classes) is a model that did not learn


def result_warnings(m, journal: Path | None = None) -> list[str]:
    """One line for each reason the results of the run ``m`` (a ``Manifest``, or the report's
    view of one) may look better than they are: an accuracy near chance (an fp32 model at 10.6 %
    on ten classes, with int8 "above" it, is noise, not a result), latencies measured on a busy
    machine (docs/measurement.md), and latencies of an emulated device (docs/farm.md). Shown in the
    build's summary and in the report."""
    import json
    import re

    from ..measure.context import BUSY_SHARE

    out = []
    classes = re.search(r"_n(\d+)$", m.arch or "")
    if classes and int(classes.group(1)) > 1:
        chance = 1.0 / int(classes.group(1))
        low = {k: v for k, v in m.accuracy.items() if k in ("fp32", "int8_brevitas", "int8_onnx", "int8_tvm")
               and isinstance(v, (int, float)) and v < CHANCE_FACTOR * chance}
        if low:
            names = ", ".join(f"{k} {v * 100:.1f} %" for k, v in low.items())
            out.append(f"accuracy near chance ({names}; chance is {chance * 100:.1f} % for {classes.group(1)} classes): "
                       f"the model did not learn, and its int8 / fp32 comparison is noise; train longer (--epochs)")
    ctx = (m.latency or {}).get("context") or {}
    if ctx.get("other_cpu_share", 0.0) >= BUSY_SHARE:
        out.append(f"the latency was measured on a busy machine (load {ctx.get('load_1min')}, other processes used "
                   f"{ctx['other_cpu_share']:.0%} of the CPU): re-measure with `edgenas measure RUN` when it is quiet")
    if (m.latency or {}).get("emulated"):
        out.append(f"the latency was measured on an emulated device ({m.latency.get('device')}; docs/farm.md): "
                   f"it is qemu's speed, not the board's; measure on a real board before trusting it")
    if journal is not None and journal.exists():
        shares, emulated = [], 0
        for line in journal.read_text().splitlines():
            try:
                stats = json.loads(line)["data"]["stats"]
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line of an append-only journal
            shares.append((stats.get("context") or {}).get("other_cpu_share", 0.0))
            emulated += bool(stats.get("emulated"))
        busy = sum(s >= BUSY_SHARE for s in shares)
        if busy:
            out.append(f"{busy} of {len(shares)} measurements of this run were taken on a busy machine "
                       f"({journal.name}); latencies and the op table may be inflated")
        if emulated:
            out.append(f"{emulated} of {len(shares)} measurements of this run are emulated ({journal.name}, "
                       f"\"emulated\": true): the op table and the predictor learned qemu's timings")
    return out
