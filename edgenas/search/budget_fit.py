"""Make the derived architecture meet the latency budget it was searched for.

The differentiable search constrains the *expected* latency, sum_i p_i * LAT_i, and the hinge
term only acts above the budget, so the expected latency ends near the budget. The argmax then
takes each layer's most probable op, which is often the more expensive of two near-equal choices:
on Fashion-MNIST 14x14 four of five DARTS seeds derived an architecture 10-16 % over the budget by
the same table the search used (docs/search.md, "The budget is met"). A user who asks for a budget
expects the model to meet it, and random search, the baseline, only ever samples architectures
under it; comparing the two at "the same budget" needs both to respect it.

The fit turns the learned distribution into a choice under the hard constraint: starting from the
argmax, swap one layer to a cheaper candidate at a time, each time the swap that gives up the
least log-probability per millisecond saved, until the table sum is within the budget (the greedy
rule for a multiple-choice knapsack, with log p as the value). An architecture already within the
budget is left as the argmax made it. ``fit_choices`` is a pure function of lists; ``fit_arch``
reads the costs from the latency table the search used.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

from ..latency.table import LatencyTable
from ..space.arch import Arch, SpaceConfig, arch_from_choices


@dataclass(frozen=True)
class Swap:
    """One swap of the fit: layer ``layer`` from candidate ``old`` to ``new`` (indices into its
    candidate list), the latency it saved and the log-probability it gave up."""

    layer: int
    old: int
    new: int
    saved_ms: float
    logp_lost: float


def fit_choices(chosen: list[int], probs: list[list[float]], costs: list[list[float]], budget_ms: float,
                fixed_ms: float = 0.0) -> tuple[list[int], list[Swap]]:
    """``chosen`` (one candidate index per layer) swapped greedily until ``fixed_ms + sum of the
    chosen costs <= budget_ms``: each step takes, over every layer and every cheaper candidate of
    it, the swap with the least ``(log p_old - log p_new) / (cost_old - cost_new)``; ties go to the
    earlier layer, then the cheaper candidate. Stops early when no cheaper candidate is left (the
    budget cannot be met in this space; the caller reports it). Returns the new indices and the
    swaps in order."""
    if not (len(chosen) == len(probs) == len(costs)):
        raise ValueError("chosen, probs and costs need one entry per layer")
    chosen = list(chosen)
    swaps: list[Swap] = []
    logp = lambda p: math.log(max(p, 1e-12))  # noqa: E731
    while fixed_ms + sum(c[j] for c, j in zip(costs, chosen)) > budget_ms + 1e-12:
        best = None
        for i, (p, c) in enumerate(zip(probs, costs)):
            old = chosen[i]
            for j, cj in enumerate(c):
                saved = c[old] - cj
                if saved <= 0:
                    continue
                key = ((logp(p[old]) - logp(p[j])) / saved, i, cj)
                if best is None or key < best[0]:
                    best = (key, Swap(i, old, j, saved, logp(p[old]) - logp(p[j])))
        if best is None:
            break
        swap = best[1]
        chosen[swap.layer] = swap.new
        swaps.append(swap)
    return chosen, swaps


def fit_arch(space: SpaceConfig, arch: Arch, probs: Sequence[Sequence[float]], table: LatencyTable,
             budget_ms: float) -> tuple[Arch, tuple[dict, ...]]:
    """``arch`` (derived from ``space`` with the final ``probs`` per layer) fitted to ``budget_ms``
    by ``table``'s sums (``fit_choices``). Returns the architecture and the swaps as dicts (for the
    search history: layer, old and new op, ms saved, log-probability given up)."""
    cands = [space.candidates(i) for i in range(len(space.positions()))]
    chosen = [c.index((layer.op, layer.w_bits)) for c, layer in zip(cands, arch.layers, strict=True)]
    new, swaps = fit_choices(chosen, [list(map(float, p)) for p in probs], table.layer_costs(space), budget_ms,
                             table.fixed_ms)
    if not swaps:
        return arch, ()
    fitted = arch_from_choices(space, [c[j] for c, j in zip(cands, new)])
    return fitted, tuple(dict(asdict(s), old_op=cands[s.layer][s.old][0], new_op=cands[s.layer][s.new][0]) for s in swaps)
