"""SpaceEvo: the Q-T score equals its formula on hand-made tables; evolution finds the known best space."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgenas.space.arch import SpaceConfig
from edgenas.search.evolve import EvolveConfig, SpaceScorer, aging_evolution, evolve_space, qt_score
from edgenas.search.stage_tables import StageRow, StageTables, default_widths, nsr


def test_qt_score_formula_by_hand():
    losses = np.array([1.0, 2.0, 3.0, 4.0, 0.5])
    lats = np.array([1.0, 1.0, 3.0, 1.0, 5.0])
    # T = 2: subnets 0, 1, 3 meet it, p = 3/5; best-2 losses among them: 1.0, 2.0 -> L_acc = 1.5
    t, a = 0.8, 0.5
    l_lat = max(1.0, (t / 0.6) ** a)
    assert qt_score(losses, lats, 2.0, t, a, top_k=2) == pytest.approx(1 / (l_lat * 1.5))
    # p above t: no latency penalty
    assert qt_score(losses, lats, 2.0, 0.1, a, top_k=2) == pytest.approx(1 / 1.5)
    assert qt_score(losses, lats, 0.5, t, a, top_k=2) == 0.0


def _tables() -> StageTables:
    """Two stages; block "mb" is accurate but slow, "dw" fast but worse; widths 8/16/24."""
    rows = []
    for s in range(2):
        for block, (loss, lat) in {"mb": (0.2, 1.0), "dw": (0.5, 0.3)}.items():
            for w in (8, 16, 24):
                rows.append(StageRow(s, block, f"{block}_x", w, loss * 16 / w, lat * w / 16))
    return StageTables(tuple(rows), fixed_ms=0.1, teacher_acc=1.0)


def test_scorer_samples_only_the_allowed_rows_and_matches_the_formula():
    cfg = EvolveConfig(blocks=("mb", "dw"), window=2, n_samples=4000, top_k=10, t=0.08, a=0.01)
    scorer = SpaceScorer(_tables(), cfg, ((8, 16, 24), (8, 16, 24)), target_ms=1.5)
    cand = ((0, 0), (1, 1))  # stage 0: mb at widths 8/16, stage 1: dw at widths 16/24
    losses, lats, picks = scorer.sample(cand)
    rows = scorer.rows
    assert {(rows[i].block, rows[i].width) for i in picks[:, 0]} == {("mb", 8), ("mb", 16)}
    assert {(rows[i].block, rows[i].width) for i in picks[:, 1]} == {("dw", 16), ("dw", 24)}
    nsr_sum = np.array([rows[i].nsr for i in picks[:, 0]]) + np.array([rows[i].nsr for i in picks[:, 1]])
    assert np.allclose(losses, nsr_sum)
    ok = lats <= 1.5
    p = ok.mean()
    expect = 1 / (max(1, (0.08 / p) ** 0.01) * np.sort(losses[ok])[:10].mean())
    assert scorer.score(cand) == pytest.approx(expect)


def test_aging_evolution_finds_the_best_space():
    cfg = EvolveConfig(blocks=("mb", "dw"), window=1, n_samples=2000, top_k=5, population=6, sample_size=3, cycles=60)
    widths = ((8, 16, 24), (8, 16, 24))
    scorer = SpaceScorer(_tables(), cfg, widths, target_ms=100.0)  # every subnet fits: lowest loss wins
    best, score, history = aging_evolution(scorer, seed=0)
    assert best == ((0, 2), (0, 2))  # mb at the widest window in both stages
    assert history == sorted(history) and math.isclose(score, history[-1])
    res = evolve_space(SpaceConfig(image_size=8, stages=SpaceConfig().stages[:2]), _tables(), cfg, widths, 100.0)
    assert [st.channels for st in res.space.stages] == [24, 24]
    assert res.space.stages[0].ops[-1] == "skip" and "mb_k3_e3" in res.space.stages[0].ops


def test_tight_target_prefers_the_fast_block():
    cfg = EvolveConfig(blocks=("mb", "dw"), window=1, n_samples=2000, top_k=5, population=6, sample_size=3, cycles=60)
    scorer = SpaceScorer(_tables(), cfg, ((8, 16, 24), (8, 16, 24)), target_ms=0.8)
    best, _, _ = aging_evolution(scorer, seed=0)
    assert {b for b, _ in best} == {1}


def test_nsr_is_normalised_by_the_teacher_variance():
    import torch

    torch.manual_seed(0)
    teacher = torch.randn(8, 3, 4, 4) * torch.tensor([1.0, 10.0, 0.1]).reshape(1, 3, 1, 1)
    var = teacher.var(dim=(0, 2, 3))
    assert float(nsr(torch.zeros_like(teacher), teacher, var)) == pytest.approx(1.0, rel=0.15)
    assert float(nsr(teacher, teacher, var)) == 0.0


def test_default_widths_are_int8_friendly():
    for ws in default_widths(SpaceConfig(), n=4):
        assert len(ws) == 4 and all(w % 8 == 0 and w > 0 for w in ws)


def test_evolve_for_budget_end_to_end_with_a_stand_in_latency():
    """Teacher, block-wise KD proxy and evolution on a toy set; latencies from a MACs stand-in
    (the real runs measure them on the target through profile_space)."""
    import dataclasses

    import torch

    from edgenas.data import DataSplits
    from edgenas.latency.table import LatencyTable, op_key
    from edgenas.space.arch import StageConfig
    from edgenas.space.cost import op_cost
    from edgenas.search.evolve import evolve_for_budget
    from edgenas.space.supernet import Supernet

    rng = np.random.default_rng(0)
    x = rng.standard_normal((96, 1, 8, 8)).astype("float32")
    y = rng.integers(0, 3, 96)
    part = lambda i: (x[i * 24 : (i + 1) * 24], y[i * 24 : (i + 1) * 24])  # noqa: E731
    data = DataSplits("toy", 3, 1, 8, part(0), part(1), part(2), part(3))
    base = SpaceConfig(image_size=8, stem=8, head=16, num_classes=3, stages=(StageConfig(8, 1, 1), StageConfig(16, 2, 2)))

    def latency_of(space, table):
        new = {op_key(op, b, cin, cout, s, hw): op_cost(op, cin, cout, s, hw).macs * 1e-5
               for op, b, cin, cout, s, hw in table.missing(space)}
        return table.merged(new)

    cfg = EvolveConfig(blocks=("mb", "dw"), n_widths=2, n_samples=500, top_k=5, population=4, sample_size=2, cycles=5,
                       teacher_epochs=1, kd_epochs=1)
    torch.manual_seed(0)
    res, tables, table = evolve_for_budget(base, data, LatencyTable("toy", {}, 0.01), 10.0, cfg, latency_of)
    assert len(tables.rows) == 2 * 2 * 2 and all(r.nsr >= 0 and r.latency_ms > 0 for r in tables.rows)
    stage1 = [r for r in tables.rows if r.stage == 1 and r.block == "mb"]
    hand = op_cost("mb_k3_e3", 8, stage1[0].width, 2, 8).macs * 1e-5 + op_cost("mb_k3_e3", stage1[0].width, stage1[0].width, 1, 4).macs * 1e-5
    assert stage1[0].latency_ms == pytest.approx(hand)
    space = dataclasses.replace(res.space)
    assert Supernet(space)(torch.randn(2, 1, 8, 8)).shape == (2, 3)
