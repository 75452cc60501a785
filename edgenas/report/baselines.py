"""Where a report finds its baselines, and whether they were measured in the run's setting.

Issue 8 asks every report to set the searched model beside random search and the hand-designed
sweep. ``scripts/bench_search.py`` writes them per host into ``<tuning root>/<target>/baselines.json``
(beside the op table and tuning records: latencies are only comparable on the machine that
measured them), so a build finds them without an extra step; ``edgenas report RUN --baselines
FILE`` installs ``RUN/baselines.json``, which wins because the user chose it for this run.

Baselines from another data set or input size are not comparable with the run's model, but
they are still better shown (flagged) than hidden, so the report lists every difference.
"""

from __future__ import annotations

from pathlib import Path

from .. import fsio

RUN_FILE = "baselines.json"


def _rows(path: Path) -> list[dict] | None:
    """The rows of a baselines file (a list, or ``{"baselines": [...]}``); None when unreadable."""
    try:
        raw = fsio.read_json(path)
    except (OSError, ValueError):
        return None
    if isinstance(raw, dict):
        raw = raw.get("baselines")
    return [b for b in raw if isinstance(b, dict) and "name" in b] if isinstance(raw, list) else None


def target_name(config: dict, manifest, op_table=None) -> str | None:
    """The run's target name, as the run recorded it: its manifest's, else its op table's (both
    hold the name a ``--target path/to.toml`` resolved to), else ``--target`` when it was a name."""
    if manifest is not None and manifest.target not in (None, "?"):
        return manifest.target
    if op_table is not None and getattr(op_table, "target", None):
        return op_table.target
    name = config.get("target")
    return name if isinstance(name, str) and name and not name.endswith(".toml") and "/" not in name else None


def find_baselines(run: Path, target: str | None) -> tuple[list[dict], str | None]:
    """``(rows, source path)``: ``RUN/baselines.json`` if it exists, else the target's file in
    the tuning root (``EDGENAS_TUNING_LOGS`` or ``tuning_logs/``), else ``([], None)``."""
    own = run / RUN_FILE
    if own.exists():
        return _rows(own) or [], str(own)
    if target:
        from ..tuning_store import TuningStore

        shared = TuningStore.named(target).search_baselines_file
        rows = _rows(shared) if shared.exists() else None
        if rows:
            return rows, str(shared)
    return [], None


def data_name(spec: str) -> str:
    """The data set name ``data.load_data`` gives a ``--data`` spec (without loading it)."""
    kind, _, arg = spec.partition(":")
    return f"folder:{Path(arg).name}" if kind == "folder" else kind


def setting_mismatch(rows: list[dict], data: str | None, image_size: int | None, target: str | None) -> list[str]:
    """Readable differences between the baselines' setting and the run's (empty when they match
    or the baselines do not record it)."""
    out = []
    for key, label, mine, show in (("data", "data set", data, str), ("image_size", "image size", image_size,
                                                                        lambda v: f"{v}x{v}"),
                                   ("target", "target", target, str)):
        theirs = sorted({b[key] for b in rows if b.get(key) is not None}, key=str)
        if mine is not None and theirs and theirs != [mine]:
            out.append(f"{label}: baselines {', '.join(show(v) for v in theirs)}, this run {show(mine)}")
    return out


def install_baselines(src: Path, run_dir: Path) -> None:
    """Validate a baselines file and copy it atomically to RUN_DIR/baselines.json."""
    import json

    from ..build.rundir import RunDir
    from ..errors import UsageError

    RunDir.read(run_dir)
    try:
        rows = json.loads(src.read_text())
    except FileNotFoundError:
        raise UsageError(f"{src}: no such baselines file") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise UsageError(f"{src}: not JSON ({e})") from None
    def ok(r) -> bool:
        num = lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))  # noqa: E731
        return (isinstance(r, dict) and isinstance(r.get("name"), str) and "latency_ms" in r
                and all(num(r.get(k)) for k in ("latency_ms", "accuracy", "latency_std", "accuracy_std")))

    if not isinstance(rows, list) or not all(ok(r) for r in rows):
        raise UsageError(f"{src}: expected a list of {{\"name\", \"latency_ms\", \"accuracy\", ...}} "
                         "(scripts/bench_search.py writes one)")
    fsio.write_json(run_dir / RUN_FILE, rows)
