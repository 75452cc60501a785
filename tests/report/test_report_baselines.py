"""Search results over seeds (edgenas.report.ablation, scripts/bench_search.py's aggregation) and
the baselines.json it writes, shown beside the searched model by `edgenas report RUN --baselines
FILE` and, from the tuning root, by every report of a build for the same target.

No build: a run directory with only state.json is enough for the report, so this stays fast.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from edgenas.report import write_report
from edgenas.report.collect import collect
from edgenas.report import ablation as ab

from buildkit import run_cli

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bs():
    spec = importlib.util.spec_from_file_location("bench_search", REPO / "scripts" / "bench_search.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_arms_are_built_on_the_given_search_config(bs):
    from edgenas.search.darts import SearchConfig

    base = SearchConfig(epochs=4, warmup=1, batch=16, a_lr=0.5)
    arms = bs.arms(base)
    assert all(cfg.epochs == 4 and cfg.batch == 16 and cfg.a_lr == 0.5 for _, cfg in arms.values())
    assert arms["a"][1] == base and arms["random"][1] == base                 # random: arm a's config and budget
    assert arms["b"][1].noise == "gauss" and arms["d"][0] == {"sparse_levels": (0.75,)}


def _rows():
    """Hand-made per-seed rows: arm a is worse than random on every seed, the sweep is slow."""
    table = (("a", (0.90, 0.92, 0.94), (0.020, 0.022, 0.024)), ("random", (0.95, 0.96, 0.97), (0.05, 0.05, 0.05)),
             ("mbv2_0.25", (0.80, 0.80, 0.80), (0.03, 0.03, 0.03)), ("mbv2_1.0", (0.99, 0.99, 0.99), (0.2, 0.2, 0.2)))
    return [dict(arm=arm, seed=s, fp32_acc=acc + 0.01, quant_acc=acc, drop_pp=1.0, int8_ms=ms[s],
                 search_s=None if arm.startswith("mbv2") else 60.0 + s)
            for arm, accs, ms in table for s, acc in enumerate(accs)]


def test_mean_std_and_paired_intervals_over_seeds():
    rows = _rows()
    summary = ab.summarize(rows)
    assert summary["a"]["n"] == 3
    assert summary["a"]["quant_acc"]["mean"] == pytest.approx(0.92)
    assert summary["a"]["quant_acc"]["std"] == pytest.approx(0.02)          # sample std (ddof=1), not 0.0163
    assert summary["mbv2_0.25"]["quant_acc"]["std"] == pytest.approx(0.0)
    assert summary["mbv2_0.25"]["search_s"]["mean"] is None                  # no search for hand-designed nets
    # paired by seed: differences -0.05, -0.04, -0.03 -> mean -0.04, t(2) half-width 4.303 * 0.01 / sqrt(3)
    d = ab.paired_diff(rows, "a", "random", "quant_acc")
    assert d["n"] == 3 and d["mean"] == pytest.approx(-0.04)
    assert d["ci95"] == pytest.approx([-0.04 - 0.024841, -0.04 + 0.024841], abs=1e-5)
    assert d["ci95"][1] < 0                                                  # random wins, and the interval says so
    single = ab.paired_diff([r for r in rows if r["seed"] == 0], "a", "random", "quant_acc")
    assert single["n"] == 1 and single["ci95"] == [None, None]
    comp = ab.comparisons(rows, summary)
    assert set(comp) == {"a"} and set(comp["a"]) == {"random", "mbv2_0.25"}  # nearest sweep net in latency
    assert comp["a"]["random"]["int8_acc_pp"]["mean"] == pytest.approx(-4.0)
    assert comp["a"]["mbv2_0.25"]["int8_ms"]["mean"] == pytest.approx(-0.008)


def test_baselines_json_reaches_the_report(tmp_path):
    base = ab.baselines(ab.summarize(_rows()), "digits 8x8, x86-avx2")
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


def _bench_rows():
    """``_rows`` as the benchmark writes them: with BitOps and weight sparsity per seed."""
    return [dict(r, bitops_g=0.01 * (1 + r["seed"]), sparsity=0.75 if r["arm"] == "a" else 0.0) for r in _rows()]


def test_bitops_and_sparsity_are_summarised_and_tabled():
    summary = ab.summarize(_bench_rows())
    assert summary["a"]["bitops_g"]["mean"] == pytest.approx(0.02) and summary["a"]["sparsity"]["mean"] == 0.75
    text = ab.summary_table(summary)
    assert "BitOps G" in text and "sparsity %" in text and "75.0 ± 0.0" in text
    md = ab.summary_table(summary, markdown=True).splitlines()
    assert md[0].startswith("| arm | n | fp32 %") and "BitOps G" in md[0] and len(md) == 2 + len(summary)


def _summary(**arms):
    """A hand-made summary: arm -> (int8 ms, int8 accuracy, drop pp), std 0, 3 seeds."""
    return {arm: {"n": 3, "int8_ms": {"mean": ms, "std": 0.0}, "quant_acc": {"mean": acc, "std": 0.0},
                  "drop_pp": {"mean": drop, "std": 0.0}} for arm, (ms, acc, drop) in arms.items()}


# sweep: 1 ms 90 %, 2 ms 94 %, 3 ms 93 % (dominated: dropped), 8 ms 98 %
SWEEP = {"mbv2_0.25": (1.0, 0.90, 1.0), "mbv2_0.5": (2.0, 0.94, 1.0), "mbv2_0.75": (3.0, 0.93, 1.0),
         "mbv2_1.0": (8.0, 0.98, 1.0)}


def test_goals_from_a_hand_made_summary():
    g = ab.goals(_summary(**SWEEP, random=(1.0, 0.9, 1.0),
                          a=(1.5, 0.935, 0.8),    # sweep 92 % at 1.5 ms: +1.5 pp (met); 1.875 ms at 93.5 %: 1.25x
                          b=(2.0, 0.94, 0.3),     # on the curve: +0 pp, 1.0x
                          c=(2.0, 0.949, 0.5),    # +0.9 pp, but the sweep needs 3.35 ms for 94.9 %: 1.675x (met)
                          d=(9.0, 0.99, 0.5),     # beyond the sweep both ways: not decidable
                          e=(0.5, 0.85, 0.5)))    # faster than the fastest net, compared with its 90 %: -5 pp
    vs, arms = g["vs_sweep"], g["vs_sweep"]["arms"]
    assert vs["sweep_front"] == [(1.0, 0.90), (2.0, 0.94), (8.0, 0.98)]
    assert arms["a"]["sweep_acc_at_ms"] == pytest.approx(0.92) and arms["a"]["acc_gain_pp"] == pytest.approx(1.5)
    assert arms["a"]["speedup"] == pytest.approx(1.875 / 1.5) and arms["a"]["met"] is True
    assert arms["b"]["acc_gain_pp"] == pytest.approx(0.0) and arms["b"]["speedup"] == pytest.approx(1.0)
    assert arms["b"]["met"] is False
    assert arms["c"]["acc_gain_pp"] == pytest.approx(0.9) and arms["c"]["sweep_ms_at_acc"] == pytest.approx(3.35)
    assert arms["c"]["speedup"] == pytest.approx(1.675) and arms["c"]["met"] is True
    assert arms["d"]["sweep_acc_at_ms"] is None and arms["d"]["speedup"] is None and arms["d"]["met"] is None
    assert arms["e"]["acc_gain_pp"] == pytest.approx(-5.0) and arms["e"]["speedup"] is None and arms["e"]["met"] is False
    assert "random" not in arms and vs["met_by"] == ["a", "c"] and vs["met"] is True
    assert g["noise"] == {"max_drop_pp": 0.5, "drop_a_pp": 0.8, "drop_b_pp": 0.3, "met": True}
    lines = ab.goal_lines(g)
    assert lines[0].startswith("(i)") and lines[0].endswith("met by a, c")
    assert any(line.strip().startswith("b:") and line.endswith("NOT met") for line in lines)
    assert any(line.strip().startswith("d:") and line.endswith("not decidable") for line in lines)
    assert lines[-1].startswith("(ii)") and "b 0.30 pp, a 0.80 pp: met" in lines[-1]


def test_goals_not_met_and_not_run():
    # noise-aware drop under 0.5 pp but not below plain DARTS's: not met
    g = ab.goals(_summary(**SWEEP, a=(1.0, 0.5, 0.2), b=(2.0, 0.94, 0.3)))
    assert g["noise"]["met"] is False and g["vs_sweep"]["met"] is False and g["vs_sweep"]["met_by"] == []
    # arm b not run, no sweep: neither goal can be decided
    g = ab.goals(_summary(a=(1.0, 0.9, 0.2)))
    assert g["noise"]["met"] is None and g["vs_sweep"] == dict(g["vs_sweep"], arms={}, met=None, met_by=[])
    assert "not decidable" in ab.goal_lines(g)[0] and "b -" in ab.goal_lines(g)[-1]


def test_results_markdown_has_the_table_and_the_goals(bs):
    summary = ab.summarize(_bench_rows())
    md = bs.results_markdown(summary, ab.goals(summary), "digits 8x8, x86-avx2")
    assert "| arm | n |" in md and "## Goals" in md and "- (i) searched int8" in md and "- (ii)" in md


def _run(tmp_path, image_size=16, name="run"):
    run = tmp_path / name
    run.mkdir()
    config = {"target": "x86-avx2", "data": "digits", "rounds": 0, "space": {"image_size": image_size}}
    (run / "state.json").write_text(json.dumps({"config": config, "completed": {}}))
    return run


def test_bench_baselines_in_the_tuning_root_reach_every_report(bs, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGENAS_TUNING_LOGS", str(tmp_path / "tuning_logs"))   # not the session's shared root
    base = ab.baselines(ab.summarize(_rows()), "digits 8x8, x86-avx2", data="digits", image_size=8, target="x86-avx2")
    assert bs.install_baselines(base, "x86-avx2", quick=True) is None
    assert not (tmp_path / "tuning_logs").exists()                                # --quick numbers are not baselines
    shared = bs.install_baselines(base, "x86-avx2")
    assert shared == tmp_path / "tuning_logs" / "x86-avx2" / "baselines.json" and json.loads(shared.read_text()) == base

    run = _run(tmp_path)                                                           # built at 16x16, baselines at 8x8
    view = collect(run)
    assert view.baselines == base and view.baselines_from == str(shared)
    assert view.baselines_mismatch == ["image size: baselines 8x8, this run 16x16"]
    html = write_report(run).read_text()
    assert 'id="baselines"' in html and 'id="no-baselines"' not in html and str(shared) in html
    assert 'id="baselines-mismatch"' in html and "image size: baselines 8x8, this run 16x16" in html
    assert "over 3 seeds" in html and "hand-designed: MobileNetV2-style x0.25" in html

    same = _run(tmp_path, image_size=8, name="same")
    assert collect(same).baselines_mismatch == [] and 'id="baselines-mismatch"' not in write_report(same).read_text()

    pinned = [dict(base[0], name="pinned to this run")]                            # RUN/baselines.json wins
    (same / "baselines.json").write_text(json.dumps(pinned))
    view = collect(same)
    assert [b["name"] for b in view.baselines] == ["pinned to this run"] and view.baselines_from == str(same / "baselines.json")

    other = _run(tmp_path, name="other")
    cfg = json.loads((other / "state.json").read_text())
    cfg["config"]["target"] = "rpi4"                                               # no baselines for that target
    (other / "state.json").write_text(json.dumps(cfg))
    assert collect(other).baselines == [] and 'id="no-baselines"' in write_report(other).read_text()
