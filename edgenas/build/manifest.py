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


def round_line(r: dict) -> str:
    """One feedback round of ``Manifest.rounds`` as the build prints it, while it runs and in
    the summary (one wording, so logs and summaries can be grepped alike)."""
    return (f"predicted {r['predicted_ms']:.3f} ms, measured {r['measured_ms']:.3f} ms (error {r['pred_err_pct']:.1f} %), "
            f"budget {r['budget_ms']:.3f} ms {'met' if r['budget_met'] else 'NOT met'}")
