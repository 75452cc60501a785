"""The collapse warning fires when a search is forced to collapse, and stays quiet otherwise."""

from edgenas.data import load_data
from edgenas.latency.table import LatencyTable
from edgenas.search.collapse import collapse_warning, first_crossing, skip_share_series
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
    epoch, _ = first_crossing(res.history, "skip_share_arch")
    assert 1 <= epoch <= 3 and f"at epoch {epoch}" in msg
    assert [r["epoch"] for r in skip_share_series(res.history)] == [1, 2, 3]


def test_no_warning_without_collapse():
    history = [{"skip_share_arch": 0.0, "skip_share_probs": 0.3}, {"skip_share_arch": 0.2, "skip_share_probs": 0.25}]
    assert collapse_warning(history) is None


def test_warning_names_the_trend():
    history = [{"skip_share_arch": 0.2, "skip_share_probs": 0.3}, {"skip_share_arch": 1.0, "skip_share_probs": 0.9}]
    assert "0.30 -> 0.90" in collapse_warning(history)


def _history(probs, arch):
    return [{"epoch": e, "skip_share_probs": p, "skip_share_arch": a} for e, (p, a) in enumerate(zip(probs, arch), 1)]


def test_a_rise_that_is_undone_by_the_last_epoch_still_warns_and_names_the_epoch():
    msg = collapse_warning(_history([0.2, 0.35, 0.6, 0.4], [0.0, 0.0, 0.0, 0.0]))
    assert msg is not None and "rose past 0.50 at epoch 3" in msg and "0.20 -> 0.40 by epoch 4" in msg
    assert "derived architecture" not in msg            # the argmax never collapsed


def test_the_derived_architecture_alone_can_trigger_it():
    msg = collapse_warning(_history([0.2, 0.3, 0.4], [0.0, 1 / 3, 2 / 3]))
    assert msg is not None and "67% of the derived architecture's layers were parameter-free at epoch 3" in msg
    assert "softmax" not in msg


def test_threshold_and_histories_without_the_signal():
    hist = _history([0.2, 0.45], [0.0, 0.0])
    assert collapse_warning(hist) is None and "epoch 2" in collapse_warning(hist, threshold=0.4)
    random_search = [{"sample": 1, "val_acc": 0.5, "arch": "x"}]   # a strategy without alphas
    assert skip_share_series(random_search) == [] and collapse_warning(random_search) is None


# A latency table under which the conv op is cheap and the budget loose: the hinge latency term is
# zero throughout, so whatever pushes the layers to skip is DARTS's own dynamics (a large alpha
# step with no warm-up: the free op wins while the conv weights are still untrained).
LOOSE = LatencyTable("t", {"mb_k3_e3|w8|8->8|s1|8x8": 0.1}, 0.01)


def _loose_search(**kw):
    data = load_data("digits", 8, seed=0)
    cfg = SearchConfig(epochs=3, warmup=0, a_lr=1.0, latency_form="hinge", **kw)
    return search(SPACE, data, LOOSE, budget_ms=5.0, cfg=cfg, seed=0)


def test_plain_darts_collapses_on_a_tiny_space_and_the_auxiliary_skip_remedy_does_not():
    plain = _loose_search(remedy="none")
    assert collapse_warning(plain.history) is not None, [h["skip_share_arch"] for h in plain.history]
    remedied = _loose_search(remedy="darts-")
    assert collapse_warning(remedied.history) is None, [h["skip_share_arch"] for h in remedied.history]
    # the auxiliary skip decays linearly from 1 to 0 and is gone from the derived network
    assert [h["aux_skip"] for h in remedied.history] == [1.0, 0.5, 0.0]
    assert all(h["aux_skip"] == 0.0 for h in plain.history)


def test_default_search_with_a_loose_budget_does_not_collapse():
    data = load_data("digits", 8, seed=0)
    space = SpaceConfig(image_size=8, stem=8, stages=(StageConfig(8, 3, 1),), head=16, ops=("mb_k3_e3", "mb_k5_e3", "skip"))
    table = LatencyTable("t", {"mb_k3_e3|w8|8->8|s1|8x8": 0.1, "mb_k5_e3|w8|8->8|s1|8x8": 0.15}, 0.01)
    res = search(space, data, table, budget_ms=5.0, cfg=SearchConfig(epochs=4, warmup=1, a_lr=1e-2), seed=0)
    assert collapse_warning(res.history) is None, [h["skip_share_arch"] for h in res.history]
    assert res.expected_ms < 5.0


def test_a_budget_fit_that_leaves_mostly_skip_warns_and_names_the_budget():
    from edgenas.search.collapse import fit_warning
    from edgenas.space.arch import Arch

    arch = Arch.parse("r8_i1_stem8|skip_c8_s1_w8a8|skip_c8_s1_w8a8|mb_k3_e3_c8_s1_w8a8|head16_n10")
    swaps = ({"layer": 0, "old_op": "mb_k3_e3", "new_op": "skip"}, {"layer": 1, "old_op": "mb_k3_e6", "new_op": "skip"})
    msg = fit_warning(arch, swaps, 0.123)
    assert msg is not None and "67% of the layers are parameter-free" in msg and "2 of its 2 swap(s)" in msg
    assert "0.123 ms" in msg and "--latency-budget" in msg
    assert fit_warning(arch, (), 0.123) is None                 # no fit: the argmax chose them (collapse_warning's case)
    one = Arch.parse("r8_i1_stem8|skip_c8_s1_w8a8|mb_k3_e3_c8_s1_w8a8|mb_k3_e3_c8_s1_w8a8|head16_n10")
    assert fit_warning(one, swaps[:1], 0.123) is None           # a third is parameter-free: under one half
