"""QuantNAS noise: magnitude matches Delta_b, straight-through gradients, the mixture, the direct baseline."""

from __future__ import annotations

import pytest
import torch

from edgenas.space.arch import SpaceConfig
from edgenas.space.noise import QuantNoise, fake_quant, noise_like, step
from edgenas.space.supernet import Supernet


@pytest.mark.parametrize("kind, std_over_delta", [("gauss", 0.5), ("uniform", (1 / 12) ** 0.5)])
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_noise_std_matches_delta(kind, std_over_delta, bits):
    torch.manual_seed(0)
    x = torch.rand(200_000) * 6 - 1  # range 6: Delta_b = 6 / (2^b - 1)
    delta = step(x, bits)
    assert float(delta) == pytest.approx(float(x.max() - x.min()) / (2**bits - 1))
    # p0 = 0 and one branch of weight 1: the perturbed tensor is exactly x + Delta_b * eps.
    out = QuantNoise(kind, p0=0.0).perturb(x, [bits], 0.0, torch.tensor([1.0]), training=True)
    noise = out - x
    assert float(noise.mean()) == pytest.approx(0.0, abs=0.01 * float(delta))
    assert float(noise.std()) == pytest.approx(std_over_delta * float(delta), rel=0.02)
    if kind == "uniform":
        assert float(noise.abs().max()) <= 0.5 * float(delta) + 1e-6


def test_noise_is_resampled_and_gradient_is_straight_through():
    x = torch.randn(1000, requires_grad=True)
    qn = QuantNoise("gauss")
    p0, pi = qn.mixture(torch.tensor([0.3, 0.5]))
    a = qn.perturb(x, [4, 8], p0, pi, training=True)
    b = qn.perturb(x, [4, 8], p0, pi, training=True)
    assert not torch.equal(a, b)
    a.sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, p0 + float(pi.sum())))
    assert noise_like(x, step(x, 4)).requires_grad is False


def test_mixture_coefficients_follow_quantnas():
    a = torch.tensor([0.2, 0.4])
    p0, pi = QuantNoise("gauss").mixture(a)
    assert p0 == pytest.approx(1 / 3)
    assert torch.allclose(pi, a / (a.sum() + 1 / 3))
    p0, pi = QuantNoise("direct").mixture(a)
    assert p0 == 0.0 and torch.allclose(pi, a / a.sum())


def test_eval_mode_uses_the_noise_expectation():
    x = torch.randn(100)
    qn = QuantNoise("gauss")
    p0, pi = qn.mixture(torch.tensor([0.5]))
    assert torch.allclose(qn.perturb(x, [4], p0, pi, training=False), (p0 + pi.sum()) * x)


def test_fake_quant_lands_on_the_grid_with_identity_gradient():
    x = torch.linspace(-1, 1, 101, requires_grad=True)
    q = fake_quant(x, 2)
    levels = torch.unique(q.detach())
    assert len(levels) <= 4
    assert float((q.detach() - x.detach()).abs().max()) <= float(step(x, 2)) / 2 + 1e-6
    q.sum().backward()
    assert torch.allclose(x.grad, torch.ones_like(x))


@pytest.mark.parametrize("kind", ["gauss", "uniform", "direct"])
def test_noisy_supernet_trains_alphas_and_weights(kind):
    torch.manual_seed(0)
    net = Supernet(SpaceConfig(image_size=8, bits=(4, 8)))
    net.set_transform(QuantNoise(kind))
    net(torch.randn(4, 1, 8, 8)).square().mean().backward()
    assert all(a.grad is not None and a.grad.abs().sum() > 0 for a in net.alphas)
    conv = net.cells[1].ops["mb_k3_e6"].body[0].conv
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_adq_block_follows_the_formula():
    from edgenas.space.adq import ADQ, wrap
    from edgenas.space.ops import create_op

    torch.manual_seed(0)
    op = create_op("mb_k3_e3", 8, 8, 1)
    adq = wrap(op, 8).eval()
    assert isinstance(adq, ADQ) and float(adq.phi.weight) == 1.5 and float(adq.phi.bias) == 0.0
    assert wrap(create_op("skip", 8, 8, 1), 8).__class__.__name__ == "Skip"
    x = torch.randn(3, 8, 5, 5) * torch.tensor([0.5, 1.0, 4.0]).reshape(3, 1, 1, 1)
    sigma = x.flatten(1).std(dim=1, unbiased=False).reshape(3, 1, 1, 1)
    expect = x + 1.5 * sigma * op.body(adq.bn(x))
    assert torch.allclose(adq(x), expect, atol=1e-5)
    net = Supernet(SpaceConfig(image_size=8, adq=True))
    net.set_transform(QuantNoise("gauss"))
    net(torch.randn(2, 1, 8, 8)).sum().backward()
    assert all(a.grad is not None for a in net.alphas)
