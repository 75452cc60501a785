"""Everything the report shows, read from a run directory, tolerant of a run that is not finished.

The report is regenerated from files alone (``edgenas report RUN_DIR``), so it must read any run
directory: a finished one, one interrupted mid-round, or one written by an older edgenas whose
configuration no longer decodes. Missing pieces become ``None`` / empty lists and the page says
"not available yet" instead of failing.

``baselines.json`` (optional, written by the random-search / hand-designed benchmarks; found as
``baselines.py`` says): a list of ``{"name", "latency_ms", "accuracy"}`` with optional
``"latency_std"``, ``"accuracy_std"``, ``"seeds"``, ``"data"``, ``"image_size"``, ``"target"``;
accuracy is a fraction in [0, 1] and may be ``null`` when only latency is known.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from .. import fsio, records
from ..build.rundir import OP_TABLE, TIMING, RunDir, read_state
from ..errors import DamagedFile, EdgenasError
from ..search.collapse import collapse_warning
from .baselines import data_name, find_baselines, setting_mismatch, target_name


@dataclass
class RoundView:
    index: int
    summary: dict | None          # state.json's r<N>.measure: predicted/measured/error/budget
    predictor: dict | None        # predictor.json's data (scale, offset_ms, n_points, kind, ...)
    arch: str | None              # the round's chosen architecture string
    history: list[dict]           # search.json's per-epoch history (probs per layer)
    measured: list[dict]          # measured.json rows (chosen first)
    collapse: str | None = None   # search.collapse's warning, recomputed from the history


@dataclass
class RunView:
    run: Path
    config: dict
    manifest: SimpleNamespace | None  # manifest.json's data, attribute access, missing keys defaulted
    arch: object | None               # space.arch.Arch
    op_table: object | None           # latency.table.LatencyTable
    rounds: list[RoundView]
    baselines: list[dict]
    baselines_from: str | None = None  # where the baselines were read: RUN/baselines.json or the tuning root
    baselines_mismatch: list[str] = field(default_factory=list)  # data set / image size / target differences
    candidate_labels: list[list[str]] = field(default_factory=list)  # per searchable layer
    stage_of_layer: list[int] = field(default_factory=list)
    stage_seconds: dict = field(default_factory=dict)


MANIFEST_DEFAULTS = {"target": "?", "data": "?", "recipe": "?", "arch": "", "accuracy": {}, "latency": None,
                     "latency_how": "", "parity": [], "compile": {}, "search_cost_s": 0.0, "software": {},
                     "search_cost": {}}


def _json(path: Path, default):
    """``path``'s JSON, ``default`` when it does not exist; a file that does not parse is refused
    (``DamagedFile``): a report rendered from it would look like a real result."""
    try:
        return fsio.read_json(path)
    except FileNotFoundError:
        return default


def _data(path: Path) -> dict | None:
    """A record file's ``data``, whatever its version: a report must read runs of older edgenas
    versions too, so records are read as plain JSON here, never refused for their version."""
    raw = _json(path, None)
    if raw is None:
        return None
    if not (isinstance(raw, dict) and isinstance(raw.get("data"), dict)):
        raise DamagedFile(path, "not an edgenas record (expected keys type, version, data)")
    return raw["data"]


def _arch(run: RunDir, fallback: str | None):
    from ..space.arch import Arch

    try:
        return run.arch()
    except DamagedFile:
        raise
    except EdgenasError:
        pass
    try:
        return Arch.parse(fallback) if fallback else None
    except EdgenasError:
        return None


def _space_labels(config: dict, n_layers: int) -> tuple[list[list[str]], list[int]]:
    """Candidate names per layer and the stage index of each layer, from the run's space config."""
    space = config.get("space") or {}
    stage_of = [i for i, st in enumerate(space.get("stages", [])) for _ in range(st.get("depth", 0))]
    try:
        from ..space.arch import SpaceConfig

        sc = records.from_dict({"type": "space", "version": SpaceConfig.__record_version__, "data": space}, SpaceConfig)
        labels = [[op if len(sc.bits) == 1 else f"{op} w{b}" for op, b in sc.candidates(i)] for i in range(n_layers)]
    except Exception:  # noqa: BLE001 - a config from another edgenas version: plain labels
        labels = []
    return labels, stage_of


def collect(run_dir: str | Path) -> RunView:
    from ..latency.table import LatencyTable

    rd = RunDir(run_dir)
    run = rd.path
    state = read_state(rd.state_file) if rd.state_file.exists() else {}
    config, done = state.get("config", {}), state.get("completed", {})
    n_rounds = max([config.get("rounds", 0)] + [int(p.name[1:]) for p in (run / "rounds").glob("r*") if p.name[1:].isdigit()])
    rounds = []
    for r in range(1, n_rounds + 1):
        d = rd.round_file(r, "measured.json").parent
        measured = _json(d / "measured.json", [])
        chosen = next((row.get("arch") for row in measured if row.get("chosen")), None)
        history = list((_data(d / "search.json") or {}).get("history") or [])
        rounds.append(RoundView(r, done.get(f"r{r}.measure"), _data(d / "predictor.json"),
                                (done.get(f"r{r}.search") or {}).get("arch") or chosen, history, measured,
                                collapse_warning(history)))
    data = _data(rd.manifest_file)
    manifest = SimpleNamespace(**{**MANIFEST_DEFAULTS, **data}) if data is not None else None
    last = next((rv.arch for rv in reversed(rounds) if rv.arch), None)
    arch = _arch(rd, manifest.arch if manifest is not None and manifest.arch else last)
    try:
        table = records.load(rd.join(OP_TABLE), LatencyTable)
    except DamagedFile:
        raise
    except EdgenasError:
        table = None
    target = target_name(config, manifest, table)
    baselines, source = find_baselines(run, target)
    data_set = manifest.data if manifest is not None and manifest.data != "?" else (
        data_name(config["data"]) if isinstance(config.get("data"), str) else None)
    mismatch = setting_mismatch(baselines, data_set, (config.get("space") or {}).get("image_size"), target)
    labels, stage_of = _space_labels(config, len(arch.layers) if arch is not None else 0)
    return RunView(run=run, config=config, manifest=manifest, arch=arch, op_table=table, rounds=rounds,
                   baselines=baselines, baselines_from=source if baselines else None, baselines_mismatch=mismatch,
                   candidate_labels=labels, stage_of_layer=stage_of, stage_seconds=_json(rd.join(TIMING), {}))


def layer_latencies(view: RunView) -> list[tuple[str, float | None]]:
    """(label, ms) for the stem+head and each layer of the chosen arch, from the op table."""
    from ..latency.table import op_key

    arch, table = view.arch, view.op_table
    if arch is None or table is None:
        return []
    out: list[tuple[str, float | None]] = [("stem + head (fixed)", table.fixed_ms)]
    cin, hw = arch.stem, arch.image_size
    for i, layer in enumerate(arch.layers):
        key = op_key(layer.op, layer.w_bits, cin, layer.cout, layer.stride, hw)
        ms = 0.0 if layer.op == "skip" else table.entries.get(key)
        out.append((f"L{i} {layer.op} c{layer.cout} s{layer.stride} ({hw}x{hw})", ms))
        cin, hw = layer.cout, (hw + layer.stride - 1) // layer.stride
    return out


def describe(value) -> str:
    """Compact text of a JSON-ish value for tables."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)
