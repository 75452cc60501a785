"""Two gloo processes train what one process trains: BatchNorm normalises by the whole batch's
statistics across the ranks (``edgenas.batchnorm_sync``), with unequal and empty shards."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgenas.compute import CPU, compute_group
from edgenas.train import fit


def _net() -> nn.Module:
    torch.manual_seed(3)
    # no conv bias before a BatchNorm (its gradient is zero, and Adam turns float noise in it into steps)
    return nn.Sequential(nn.Conv2d(1, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
                         nn.Conv2d(6, 6, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))


def _data(n: int):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, n)
    x = (rng.standard_normal((n, 1, 8, 8)) * 0.5 + 2.0).astype("float32")   # off-centre: BN's mean matters
    x[:, 0, 3, 3] += y
    return x, y


def _flat(model: nn.Module) -> np.ndarray:
    return np.concatenate([t.detach().reshape(-1).numpy() for t in model.state_dict().values() if t.is_floating_point()])


@pytest.mark.parametrize("n", [65, 70])   # 65 = 64 + 1: the last batch leaves rank 1 an empty shard; 70: 3 + 3
def test_two_processes_train_like_one(n):
    data = _data(n)
    one = fit(_net(), data, epochs=2, lr=1e-2, seed=0, batch=64, compute=CPU)
    with compute_group("cpu", 2) as compute:
        two = fit(_net(), data, epochs=2, lr=1e-2, seed=0, batch=64, compute=compute)
    a, b = _flat(one), _flat(two)
    # weights and running statistics agree to float reassociation (per-shard BatchNorm: ~2e-2)
    assert np.abs(a - b).max() < 1e-4
    # the returned model is plain again: it trains on rank 0 alone without any collective
    fit(two, data, epochs=1, lr=1e-2, seed=1, batch=64, compute=CPU)
