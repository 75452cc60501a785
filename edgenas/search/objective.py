"""Terms of the architecture objective (pure functions of tensors).

Expected latency follows ProxylessNAS/FBNet: E[LAT] = fixed + sum_layers sum_i p_i * LAT_i with
p = softmax(alpha) and LAT from the current round's latency model. Two penalty forms toward the
budget T: ProxylessNAS's additive ``lambda * (E - T) / T`` and a multiplicative
``CE * (E / T) ** beta`` (the ratio keeps the log form's monotonicity for sub-millisecond T).
"""

from __future__ import annotations

import torch


def expected_latency(probs: list[torch.Tensor], costs: list[torch.Tensor], fixed_ms: float = 0.0) -> torch.Tensor:
    total = torch.zeros(())
    for p, c in zip(probs, costs, strict=True):
        total = total + (p * c).sum()
    return total + fixed_ms


def latency_loss(ce: torch.Tensor, lat: torch.Tensor, budget_ms: float, form: str = "add",
                 weight: float = 0.1, beta: float = 0.3) -> torch.Tensor:
    """The architecture loss with its latency term. ``form``: ``add`` or ``mul``."""
    if budget_ms <= 0:
        raise ValueError("latency budget must be positive")
    if form == "add":
        return ce + weight * (lat - budget_ms) / budget_ms
    if form == "mul":
        return ce * (lat / budget_ms) ** beta
    raise ValueError(f"unknown latency loss form {form!r}; use add or mul")
