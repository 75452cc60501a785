"""Search results over seeds (scripts/bench_search.py's aggregation) and the baselines.json it
writes, shown beside the searched model by `edgenas report RUN --baselines FILE`.

No build: a run directory with only state.json is enough for the report, so this stays fast.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from edgenas.report import write_report
from edgenas.report.collect import collect

from .conftest import run_cli

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bs():
    spec = importlib.util.spec_from_file_location("bench_search", REPO / "scripts" / "bench_search.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rows():
    """Hand-made per-seed rows: arm a is worse than random on every seed, the sweep is slow."""
    table = (("a", (0.90, 0.92, 0.94), (0.020, 0.022, 0.024)), ("random", (0.95, 0.96, 0.97), (0.05, 0.05, 0.05)),
             ("mbv2_0.25", (0.80, 0.80, 0.80), (0.03, 0.03, 0.03)), ("mbv2_1.0", (0.99, 0.99, 0.99), (0.2, 0.2, 0.2)))
    return [dict(arm=arm, seed=s, fp32_acc=acc + 0.01, quant_acc=acc, drop_pp=1.0, int8_ms=ms[s],
                 search_s=None if arm.startswith("mbv2") else 60.0 + s)
            for arm, accs, ms in table for s, acc in enumerate(accs)]


def test_mean_std_and_paired_intervals_over_seeds(bs):
    rows = _rows()
    summary = bs.summarize(rows)
    assert summary["a"]["n"] == 3
    assert summary["a"]["quant_acc"]["mean"] == pytest.approx(0.92)
    assert summary["a"]["quant_acc"]["std"] == pytest.approx(0.02)          # sample std (ddof=1), not 0.0163
    assert summary["mbv2_0.25"]["quant_acc"]["std"] == pytest.approx(0.0)
    assert summary["mbv2_0.25"]["search_s"]["mean"] is None                  # no search for hand-designed nets
    # paired by seed: differences -0.05, -0.04, -0.03 -> mean -0.04, t(2) half-width 4.303 * 0.01 / sqrt(3)
    d = bs.paired_diff(rows, "a", "random", "quant_acc")
    assert d["n"] == 3 and d["mean"] == pytest.approx(-0.04)
    assert d["ci95"] == pytest.approx([-0.04 - 0.024841, -0.04 + 0.024841], abs=1e-5)
    assert d["ci95"][1] < 0                                                  # random wins, and the interval says so
    single = bs.paired_diff([r for r in rows if r["seed"] == 0], "a", "random", "quant_acc")
    assert single["n"] == 1 and single["ci95"] == [None, None]
    comp = bs.comparisons(rows, summary)
    assert set(comp) == {"a"} and set(comp["a"]) == {"random", "mbv2_0.25"}  # nearest sweep net in latency
    assert comp["a"]["random"]["int8_acc_pp"]["mean"] == pytest.approx(-4.0)
    assert comp["a"]["mbv2_0.25"]["int8_ms"]["mean"] == pytest.approx(-0.008)


def test_baselines_json_reaches_the_report(bs, tmp_path):
    base = bs.baselines(bs.summarize(_rows()), "digits 8x8, x86-avx2")
    assert [b["kind"] for b in base] == ["searched", "random", "sweep", "sweep"]
    assert all(b["seeds"] == 3 for b in base)
    run = tmp_path / "run"
    run.mkdir()
    (run / "state.json").write_text(json.dumps({"config": {}, "completed": {}}))
    html = write_report(run).read_text()
    assert 'id="no-baselines"' in html and "scripts/bench_search.py" in html   # says how to produce them

    src = tmp_path / "baselines.json"
    src.write_text(json.dumps(base))
    proc = run_cli("report", str(run), "--baselines", str(src))
    assert proc.returncode == 0, proc.stderr
    assert json.loads((run / "baselines.json").read_text()) == base
    assert [b["name"] for b in collect(run).baselines] == [b["name"] for b in base]
    html = (run / "report.html").read_text()
    assert 'id="baselines"' in html and 'id="no-baselines"' not in html
    assert "random search (same space, budget and compute)" in html and "96.00 ± 1.00 %" in html
    assert "hand-designed: MobileNetV2-style x0.25" in html and "80.00 ± 0.00 %" in html

    (tmp_path / "bad.json").write_text('[{"name": "x", "latency_ms": "fast"}]')
    bad = run_cli("report", str(run), "--baselines", str(tmp_path / "bad.json"))
    assert bad.returncode == 2 and "expected a list" in bad.stderr
    assert json.loads((run / "baselines.json").read_text()) == base          # the good file was not replaced
