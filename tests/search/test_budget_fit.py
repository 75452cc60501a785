"""The budget fit: the searched architecture meets the latency budget by the search's own table."""

from __future__ import annotations

import dataclasses
import math

import pytest

from edgenas.latency.table import LatencyTable, op_key
from edgenas.search.budget_fit import fit_arch, fit_choices
from edgenas.search.darts import search

from .test_search import CFG, SPACE, _data


def test_within_budget_nothing_changes():
    chosen, swaps = fit_choices([0, 1], [[0.6, 0.4], [0.3, 0.7]], [[1.0, 0.5], [2.0, 1.0]], budget_ms=3.0)
    assert chosen == [0, 1] and swaps == []


def test_the_swap_that_gives_up_least_probability_per_ms_goes_first():
    probs = [[0.5, 0.45, 0.05],    # layer 0: candidate 1 is nearly as probable and 0.2 ms cheaper
             [0.9, 0.1, 0.0]]      # layer 1: candidate 1 saves 1 ms but is far less probable
    costs = [[1.0, 0.8, 0.0], [2.0, 1.0, 0.5]]
    chosen, swaps = fit_choices([0, 0], probs, costs, budget_ms=2.9, fixed_ms=0.05)
    assert chosen == [1, 0] and len(swaps) == 1
    s = swaps[0]
    assert (s.layer, s.old, s.new) == (0, 0, 1) and s.saved_ms == pytest.approx(0.2)
    assert s.logp_lost == pytest.approx(math.log(0.5 / 0.45))
    # a tighter budget needs more swaps; the result always meets it
    chosen, swaps = fit_choices([0, 0], probs, costs, budget_ms=2.0)
    assert sum(c[j] for c, j in zip(costs, chosen)) <= 2.0 and len(swaps) >= 2


def test_an_unreachable_budget_stops_at_the_cheapest_choice():
    chosen, swaps = fit_choices([0, 0], [[0.5, 0.5], [0.5, 0.5]], [[1.0, 0.5], [1.0, 0.5]], budget_ms=0.1)
    assert chosen == [1, 1] and len(swaps) == 2


def _graded_table():
    """A table where every layer's candidates cost more the later they come, so most choices have a
    cheaper alternative (``_table`` prices every op alike)."""
    entries = {}
    for i, ((cin, cout, s), hw) in enumerate(zip(SPACE.positions(), SPACE.spatial_sizes())):
        for j, (op, b) in enumerate(SPACE.candidates(i)):
            entries[op_key(op, b, cin, cout, s, hw)] = 0.1 + 0.05 * j
    return LatencyTable("toy", entries, 0.05)


def test_search_result_meets_the_budget_its_argmax_missed():
    data, table = _data(), _graded_table()
    # no latency term: the alphas do not depend on the budget, only the fit does
    cfg = dataclasses.replace(CFG, sparsity_weight=0.0, latency_weight=0.0)
    unfitted = dataclasses.replace(cfg, fit_budget=False)
    plain = search(SPACE, data, table, 10.0, unfitted, seed=0)   # a budget the argmax stays far inside
    assert plain.fitted == ()
    over = table.arch_sum(plain.arch)
    cheapest = table.fixed_ms + sum(min(c) for c in table.layer_costs(SPACE))
    assert over > cheapest + 0.01, plain.arch   # the argmax has a cheaper alternative somewhere
    budget = over - 0.01                        # just below the argmax: at least one swap is needed
    fitted = search(SPACE, data, table, budget, cfg, seed=0)
    assert table.arch_sum(fitted.arch) <= budget and fitted.fitted
    assert all(s["saved_ms"] > 0 for s in fitted.fitted)
    # the same derivation as the pure fit applied to the unfitted search's argmax and final probabilities
    ref, swaps = fit_arch(SPACE, search(SPACE, data, table, budget, unfitted, seed=0).arch, fitted.alphas, table, budget)
    assert ref == fitted.arch and swaps == fitted.fitted
