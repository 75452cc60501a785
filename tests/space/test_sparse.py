"""DASS sparse layers: exact top-k, straight-through score gradients, phases, QAT keeps the zeros."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgenas.quantize.convert import calibrate, to_brevitas
from edgenas.space.arch import Arch
from edgenas.space.sparse import (SparseConv2d, SparseLinear, densify, phase_at, set_phase, sparse_layers, train_sparse,
                                  weight_sparsity)
from edgenas.space.supernet import freeze
from edgenas.train import fit


@pytest.mark.parametrize("keep", [0.01, 0.1, 0.5, 0.9, 1.0])
def test_topk_mask_keeps_exactly_k(keep):
    torch.manual_seed(0)
    conv = SparseConv2d(16, 32, 3, padding=1, keep=keep)
    mask = conv.mask()
    k = max(1, round(keep * conv.weight.numel()))
    assert int(mask.sum()) == k and set(mask.unique().tolist()) <= {0.0, 1.0}
    kept = conv.scores.abs()[mask.bool()]
    dropped = conv.scores.abs()[~mask.bool()]
    assert dropped.numel() == 0 or float(kept.min()) >= float(dropped.max())


@pytest.mark.parametrize("layer", [SparseConv2d(4, 6, 3, padding=1, keep=0.3), SparseLinear(12, 5, keep=0.3)])
def test_scores_get_the_straight_through_gradient(layer):
    torch.manual_seed(0)
    x = torch.randn(2, 4, 5, 5) if isinstance(layer, SparseConv2d) else torch.randn(2, 12)
    w_eff = layer.effective_weight()
    w_eff.retain_grad()
    out = layer._conv_forward(x, w_eff, None) if isinstance(layer, SparseConv2d) else torch.nn.functional.linear(x, w_eff)
    out.square().sum().backward()
    expected = torch.sign(layer.scores) * layer.weight * w_eff.grad
    assert torch.allclose(layer.scores.grad, expected, atol=1e-6)
    assert layer.scores.grad[layer.mask() == 0].abs().sum() > 0  # pruned weights can come back


def test_score_reinit_gives_the_magnitude_mask():
    conv = SparseConv2d(8, 8, 3, keep=0.25)
    conv.reinit_scores()
    w = conv.weight.detach().abs().flatten()
    top = torch.zeros_like(w)
    top[torch.topk(w, conv.k).indices] = 1
    assert torch.equal(conv.mask().flatten(), top)


def test_phases_switch_what_trains():
    net = freeze(Arch.parse("r8_i1_stem8|mb_k3_e3_sp75_c8_s1|mb_k3_e3_c16_s2|head16_n10"))
    layers = sparse_layers(net)
    set_phase(net, "dense")
    assert not any(m.masking for m in layers) and not any(m.scores.requires_grad for m in layers)
    set_phase(net, "prune", start=True)
    assert all(m.masking and m.scores.requires_grad and not m.weight.requires_grad for m in layers)
    assert not net.head[-1].fc.weight.requires_grad
    set_phase(net, "finetune")
    assert all(m.masking and not m.scores.requires_grad and m.weight.requires_grad for m in layers)
    assert [phase_at(e, 10, (0.3, 0.2)) for e in (0, 2, 3, 4, 5, 9)] == [
        ("dense", True), ("dense", False), ("prune", True), ("prune", False), ("finetune", True), ("finetune", False)]


def test_train_sparse_then_qat_keeps_zeros(recipe):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 1, 8, 8)).astype("float32")
    y = rng.integers(0, 10, 64)
    net = freeze(Arch.parse("r8_i1_stem8|mb_k3_e3_sp75_c8_s1|head16_n10"))
    train_sparse(net, (x, y), epochs=3, lr=3e-3, seed=0)
    masks = [m.mask().clone() for m in sparse_layers(net)]
    assert all(float((m.effective_weight() == 0).float().mean()) == pytest.approx(0.75, abs=0.01) for m in sparse_layers(net))
    assert 0.3 < weight_sparsity(net) < 0.75  # stem and head stay dense
    dense = densify(net)
    assert not sparse_layers(dense)
    assert torch.allclose(dense.eval()(torch.from_numpy(x)), net.eval()(torch.from_numpy(x)), atol=1e-5)
    q = calibrate(to_brevitas(net, recipe), x, batches=1)
    fit(q, (x, y), epochs=1, lr=1e-2, seed=0)
    convs = [m for m in q.modules() if type(m).__name__ == "QuantSparseConvAct"]
    assert len(convs) == len(masks)
    q.train()
    q(torch.from_numpy(x[:2]))  # the mask is re-applied on every training forward
    for c in convs:
        assert bool((c.conv.weight.detach()[c.mask == 0] == 0).all())
    q.eval()  # and the last optimizer step did not move them either (export runs in eval mode)
    fit(q, (x, y), epochs=1, lr=1e-2, seed=1)
    for c in convs:
        assert bool((c.conv.weight.detach()[c.mask == 0] == 0).all())
