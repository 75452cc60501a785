"""The search loop with every method switched on, on a tiny data set: runs, records, resumes, selects."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from edgenas.data import DataSplits
from edgenas.latency.table import LatencyTable, op_key
from edgenas.search.darts import SearchConfig, search
from edgenas.search.select import perturbation_select, supernet_score
from edgenas.space.arch import SpaceConfig, StageConfig
from edgenas.space.supernet import Supernet


def _data(n=48, seed=0) -> DataSplits:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, 4 * n)
    x = rng.standard_normal((4 * n, 1, 8, 8)).astype("float32") * 0.3
    x[:, 0, 2, 2] += y  # a learnable signal
    part = lambda i: (x[i * n : (i + 1) * n], y[i * n : (i + 1) * n])  # noqa: E731
    return DataSplits("toy", 3, 1, 8, part(0), part(1), part(2), part(3))


SPACE = SpaceConfig(image_size=8, stem=8, num_classes=3, head=16, stages=(StageConfig(8, 2, 1), StageConfig(16, 1, 2)),
                    ops=("mb_k3_e3", "fmb_k3_e2", "skip"), bits=(4, 8), sparse_levels=(0.5,))


def _table(space: SpaceConfig) -> LatencyTable:
    entries = {}
    for i, ((cin, cout, s), hw) in enumerate(zip(space.positions(), space.spatial_sizes())):
        for op, b in space.candidates(i):
            entries[op_key(op, b, cin, cout, s, hw)] = 0.1 + 0.01 * b
    return LatencyTable("toy", entries, 0.05)


CFG = SearchConfig(epochs=3, warmup=1, batch=16, noise="gauss", entropy_weight=1e-3, bitops_weight=0.1,
                   sparsity_weight=0.1, sparse_stages=(0.34, 0.34))


def test_search_with_every_method_records_the_collapse_signal(tmp_path):
    res = search(SPACE, _data(), _table(SPACE), 0.3, CFG, seed=0, checkpoint=tmp_path / "ck.pt")
    assert len(res.history) == 3
    h = res.history[-1]
    for key in ("skip_share_probs", "skip_share_arch", "entropy", "bitops_rel", "kept_rel", "expected_ms"):
        assert key in h and np.isfinite(h[key])
    assert [r["sparse_phase"] for r in res.history] == ["dense", "prune", "finetune"]
    assert 0 <= h["skip_share_probs"] <= 1
    assert h["skip_share_arch"] == pytest.approx(sum(layer.op == "skip" for layer in res.arch.layers) / 3)
    assert len(res.arch.layers) == 3 and all(layer.w_bits in (4, 8) for layer in res.arch.layers)
    # resume from the per-epoch checkpoint: an extra epoch continues the same run
    more = search(SPACE, _data(), _table(SPACE), 0.3, dataclasses.replace(CFG, epochs=4), seed=0,
                  checkpoint=tmp_path / "ck.pt")
    assert more.history[:3] == res.history and len(more.history) == 4


def test_perturbation_selection_keeps_the_candidate_whose_removal_hurts_most():
    torch.manual_seed(0)
    space = dataclasses.replace(SPACE, bits=(8,), sparse_levels=(), stages=(StageConfig(8, 1, 1),))
    net = Supernet(space)
    data = _data()
    arch = perturbation_select(net, data, SearchConfig(batch=16, pt_epochs=0), seed=0)
    scores = []
    for j in range(len(net.cells[0].candidates)):
        w = [p.clone() for p in net.probabilities()]
        w[0][j] = 0
        acc, loss = supernet_score(net, *data.alphas, w)
        scores.append((acc, -loss))
    worst_without = min(range(len(scores)), key=scores.__getitem__)
    assert arch.layers[0].op == net.cells[0].candidates[worst_without][0]


def test_unknown_selection_is_refused():
    with pytest.raises(ValueError, match="selection"):
        search(SPACE, _data(), _table(SPACE), 0.3, SearchConfig(selection="best"), seed=0)
