"""The collapse warning fires when a search is forced to collapse, and stays quiet otherwise."""

from edgenas.data import load_data
from edgenas.latency.table import LatencyTable
from edgenas.search.collapse import collapse_warning
from edgenas.search.darts import SearchConfig, search
from edgenas.space.arch import SpaceConfig, StageConfig

SPACE = SpaceConfig(image_size=8, stem=8, stages=(StageConfig(8, 3, 1),), head=16, ops=("mb_k3_e3", "skip"))


def test_forced_collapse_fires_the_warning():
    data = load_data("digits", 8, seed=0)
    # A huge alpha learning rate and a latency term that rewards the free op: skip wins every layer.
    table = LatencyTable("t", {"mb_k3_e3|w8|8->8|s1|8x8": 1.0}, 0.01)
    cfg = SearchConfig(epochs=3, warmup=0, a_lr=1.0, latency_weight=50.0)
    res = search(SPACE, data, table, budget_ms=0.02, cfg=cfg, seed=0)
    msg = collapse_warning(res.history)
    assert msg is not None and "parameter-free" in msg, res.history[-1].get("skip_share_arch")


def test_no_warning_without_collapse():
    history = [{"skip_share_arch": 0.0, "skip_share_probs": 0.3}, {"skip_share_arch": 0.2, "skip_share_probs": 0.25}]
    assert collapse_warning(history) is None


def test_warning_names_the_trend():
    history = [{"skip_share_arch": 0.2, "skip_share_probs": 0.3}, {"skip_share_arch": 1.0, "skip_share_probs": 0.9}]
    assert "0.30 -> 0.90" in collapse_warning(history)
