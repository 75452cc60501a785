"""Terms of the architecture objective (pure functions of tensors).

* Expected latency (ProxylessNAS, Cai et al. ICLR 2019; FBNet, Wu et al. CVPR 2019):
  E[LAT] = fixed + sum_layers sum_i p_i * LAT_i, p = softmax(alpha), LAT from the current round's
  latency model. Two penalties toward the budget T: ProxylessNAS's additive ``add#linear``,
  CE + lambda * (E - T) / T, and its multiplicative ``mul#log``, CE * (log E / log T)^beta. The log
  form needs T > 1 in the unit used (T = 80 ms in the paper); our budgets are sub-millisecond, so
  ``mul`` takes the logs in microseconds, which keeps both logs positive and the ratio monotone.
  A third, ``hinge``, CE + lambda * max(0, E - T) / T, penalises only latency above the budget:
  the additive form keeps paying for every microsecond saved below T, which pushes layers to the
  free ``skip`` op long after the budget is met (the collapse, see ``collapse.py``).
* β-DARTS's Beta-Decay regularisation (Ye et al., CVPR 2022): lambda(e) * mean_layers
  logsumexp(alpha_layer), a smooth max of the raw alphas with lambda ramped linearly from 0 over
  the search. Its gradient, softmax(alpha), pulls the leading alpha down hardest, so no op (skip
  first, since it learns fastest) can run away early.
* Entropy of softmax(alpha) with QuantNAS's warm-up + ramp schedule (Shvetsov et al., IEEE Access
  2024, ``search_sr.py``: ``SparseCrit``): pushes each layer's distribution to one choice, so the
  argmax at the end loses little (the discretisation gap).
* Expected cost of any per-candidate table (BitOps, weights kept), normalised by its value at
  initialisation (uniform alphas), as QuantNAS normalises BitOps by BitOps_0.
"""

from __future__ import annotations

import math

import torch


def expected_latency(probs: list[torch.Tensor], costs: list[torch.Tensor], fixed_ms: float = 0.0) -> torch.Tensor:
    return expected_cost(probs, costs) + fixed_ms


def expected_cost(probs: list[torch.Tensor], costs: list[torch.Tensor]) -> torch.Tensor:
    """sum_layers sum_i p_i * cost_i."""
    total = torch.zeros(())
    for p, c in zip(probs, costs, strict=True):
        total = total + (p * c).sum()
    return total


def uniform_cost(costs: list[torch.Tensor]) -> float:
    """The expected cost at initialisation (alphas zero, so every layer uniform)."""
    return float(sum(c.float().mean() for c in costs))


def default_budget(table, space) -> float:
    """The latency budget when none is given: the expected latency at uniform alphas, where the
    search starts (``table.fixed_ms`` + sum of each layer's mean candidate latency). With the
    hinge term the search is then free to trade ops inside the space's average cost; the earlier
    default, the table sum of the first (cheapest) candidate per layer, left the hinge active all
    search long and the free ``skip`` the steepest way down (docs/search.md)."""
    return table.fixed_ms + uniform_cost([torch.tensor(c) for c in table.layer_costs(space)])


def latency_loss(ce: torch.Tensor, lat: torch.Tensor, budget_ms: float, form: str = "add",
                 weight: float = 0.1, beta: float = 0.3) -> torch.Tensor:
    """The architecture loss with its latency term. ``form``: ``hinge``, ``add`` or ``mul``
    (``hinge`` penalises only E > T; ``add`` and ``mul`` are ProxylessNAS's ``add#linear`` and
    ``mul#log``; ``weight`` is lambda for ``hinge`` and ``add``, ``beta`` the exponent for ``mul``)."""
    if budget_ms <= 0:
        raise ValueError("latency budget must be positive")
    if form == "hinge":
        return ce + weight * torch.relu(lat - budget_ms) / budget_ms
    if form == "add":
        return ce + weight * (lat - budget_ms) / budget_ms
    if form == "mul":
        us = lambda v: v * 1000.0 + math.e  # noqa: E731 - microseconds, shifted so log(.) >= 1
        return ce * (torch.log(us(lat)) / math.log(us(budget_ms))) ** beta
    raise ValueError(f"unknown latency loss form {form!r}; use hinge, add or mul")


def beta_decay(alphas: list[torch.Tensor]) -> torch.Tensor:
    """β-DARTS's L_beta = mean over layers of logsumexp(alpha_layer) (raw alphas, not softmax)."""
    return torch.stack([torch.logsumexp(a, 0) for a in alphas]).mean()


def linear_ramp(epoch: int, epochs: int, warmup: int, start: float = 0.0, end: float = 1.0) -> float:
    """``start`` at the first alpha epoch (``warmup``), ``end`` at the last, linear between; used
    for β-DARTS's lambda (0 -> lambda_max) and DARTS-'s auxiliary-skip weight (1 -> 0)."""
    span = epochs - 1 - warmup
    if epoch <= warmup or span <= 0:
        return start if epoch <= warmup and span > 0 else end
    return start + (end - start) * min(1.0, (epoch - warmup) / span)


def entropy(probs: list[torch.Tensor]) -> torch.Tensor:
    """H = -sum_layers sum_k p_k log p_k."""
    total = torch.zeros(())
    for p in probs:
        total = total - (p * torch.log(p.clamp_min(1e-12))).sum()
    return total


def entropy_schedule(epoch: int, epochs: int, warmup: int) -> float:
    """QuantNAS's w1(e) * w2(e) (0-based epochs; the alphas are frozen for the first ``warmup``).

    q = floor((E - E_w) / 4); w1 = (e - E_w) / (E - 1 - E_w) is a linear ramp; w2 = 0 while
    e - E_w < q, then log(e - E_w - q + 2) / log(E - E_w - q + 1), reaching 1 at the last epoch.
    With E = 20, E_w = 9: 0 at epochs 9-10, 0.06 at 11, 0.35 at 14, 1.0 at 19.
    """
    span = epochs - warmup
    if epoch < warmup or span < 2:
        return 0.0 if epoch < warmup else 1.0
    d = epoch - warmup
    q = span // 4
    w1 = d / (epochs - 1 - warmup)
    if d < q:
        return 0.0
    denom = math.log(span - q + 1)
    w2 = math.log(d - q + 2) / denom if denom > 0 else 1.0
    return w1 * w2
