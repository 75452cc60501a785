"""Random search (``--strategy random``): samples under the latency budget of the table it is given,
compute matched to the DARTS search it stands beside, and the same result for the same seed."""

from __future__ import annotations

import numpy as np
import pytest

from edgenas.data import DataSplits
from edgenas.latency.table import LatencyTable, op_key
from edgenas.search.darts import SearchConfig, search
from edgenas.search.random_search import RandomConfig, alpha_samples_per_epoch, darts_macs
from edgenas.search.strategies import STRATEGIES
from edgenas.space.arch import Arch, SpaceConfig, StageConfig
from edgenas.space.cost import module_cost
from edgenas.space.supernet import Supernet, freeze

SPACE = SpaceConfig(image_size=8, stem=8, num_classes=3, head=16, stages=(StageConfig(8, 2, 1),),
                    ops=("mb_k3_e3", "fmb_k3_e2", "skip"))
CFG = SearchConfig(epochs=2, warmup=1, batch=16)
RCFG = RandomConfig()          # what the strategy uses
BUDGET_MS = 0.3


def _data(n_w=48, n_a=20, n=24, seed=0) -> DataSplits:
    """A learnable toy task; the alpha split smaller than the weight split, as in ``load_data``."""
    rng = np.random.default_rng(seed)
    sizes = (n_w, n_a, n, n)
    y = rng.integers(0, 3, sum(sizes))
    x = rng.standard_normal((sum(sizes), 1, 8, 8)).astype("float32") * 0.3
    x[:, 0, 2, 2] += y
    ends = np.cumsum((0,) + sizes)
    parts = [(x[a:b], y[a:b]) for a, b in zip(ends[:-1], ends[1:])]
    return DataSplits("toy", 3, 1, 8, *parts)


def _table() -> LatencyTable:
    """MBConv far over the budget, fused-MBConv well under it: only mb-free archs may be sampled."""
    entries = {}
    for (cin, cout, s), hw in zip(SPACE.positions(), SPACE.spatial_sizes()):
        entries[op_key("mb_k3_e3", 8, cin, cout, s, hw)] = 1.0
        entries[op_key("fmb_k3_e2", 8, cin, cout, s, hw)] = 0.1
    return LatencyTable("toy", entries, 0.05)


def _random(seed: int):
    """Called as the build calls a strategy (edgenas/build/stages.py): same table, budget and config."""
    return STRATEGIES.get("random")(SPACE, _data(), _table(), BUDGET_MS, CFG, seed, checkpoint=None)


@pytest.fixture(scope="module")
def run0():
    return _random(0)


def test_every_sample_is_under_the_budget_of_the_same_table(run0):
    table = _table()
    assert run0.history and run0.budget_ms == BUDGET_MS
    for rec in run0.history:
        arch = Arch.parse(rec["arch"])
        assert rec["predicted_ms"] == pytest.approx(table.arch_sum(arch)) and rec["predicted_ms"] <= BUDGET_MS
        assert "mb_k3_e3" not in {layer.op for layer in arch.layers}
    assert run0.expected_ms == pytest.approx(table.arch_sum(run0.arch)) and run0.expected_ms <= BUDGET_MS
    assert max(run0.history, key=lambda r: r["val_acc"])["arch"] == str(run0.arch)   # best on validation


def test_alpha_steps_cycle_the_alpha_split():
    # 48 weight samples in batches of 16: 3 alpha steps per epoch from a 20-sample split (16, 4, 16)
    assert alpha_samples_per_epoch(48, 20, 16) == 36
    assert alpha_samples_per_epoch(48, 96, 16) == 48
    assert alpha_samples_per_epoch(40, 40, 16) == 40


def test_darts_macs_counts_what_the_search_trains_on(monkeypatch):
    """Count the samples the supernet sees in training mode during a real search."""
    data, seen = _data(), []
    forward = Supernet.forward

    def counting(self, x, weights=None):
        if self.training:
            seen.append(x.shape[0])
        return forward(self, x, weights)

    monkeypatch.setattr(Supernet, "forward", counting)
    search(SPACE, data, _table(), BUDGET_MS, CFG, seed=0)
    per_sample = module_cost(Supernet(SPACE), (1, 8, 8)).macs
    assert sum(seen) == 2 * 48 + 1 * 36
    assert darts_macs(SPACE, data, CFG) == pytest.approx(per_sample * sum(seen))


def test_random_search_spends_the_darts_compute(run0):
    budget = darts_macs(SPACE, _data(), CFG)
    n_train = len(_data().train[0])
    spent = 0.0
    for rec in run0.history:
        spent += module_cost(freeze(Arch.parse(rec["arch"])), (1, 8, 8)).macs * n_train * RCFG.epochs_each
        assert rec["macs_spent"] == pytest.approx(spent) and rec["macs_budget"] == pytest.approx(budget)
    assert len(run0.history) < RCFG.max_samples            # stopped by compute, not by the sample cap
    assert spent >= budget > run0.history[-2]["macs_spent"]  # stops as soon as the DARTS compute is spent


def test_same_seed_same_search_other_seed_other_samples(run0):
    again = _random(0)
    assert again.history == run0.history and again.arch == run0.arch
    assert _random(1).history != run0.history
