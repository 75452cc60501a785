"""Objective terms: expected latency = hand sum, both ProxylessNAS forms, entropy and its schedule, costs."""

from __future__ import annotations

import math

import pytest
import torch

from edgenas.latency.table import LatencyTable, op_key
from edgenas.search import objective as obj
from edgenas.space.arch import SpaceConfig, StageConfig
from edgenas.space.cost import arch_bitops, layer_costs, op_cost
from edgenas.space.supernet import Supernet


def test_expected_latency_equals_the_hand_sum():
    probs = [torch.tensor([0.2, 0.8]), torch.tensor([0.5, 0.25, 0.25])]
    costs = [torch.tensor([1.0, 3.0]), torch.tensor([2.0, 4.0, 0.0])]
    hand = (0.2 * 1 + 0.8 * 3) + (0.5 * 2 + 0.25 * 4 + 0.25 * 0) + 0.7
    assert float(obj.expected_latency(probs, costs, 0.7)) == pytest.approx(hand)
    assert obj.uniform_cost(costs) == pytest.approx(2.0 + 2.0)


def test_expected_latency_of_a_supernet_uses_the_table():
    space = SpaceConfig(image_size=8, stages=(StageConfig(8, 2, 1),), stem=8, ops=("mb_k3_e3", "skip"))
    entries = {op_key("mb_k3_e3", 8, 8, 8, 1, 8): 0.3}
    table = LatencyTable("t", entries, fixed_ms=0.1)
    costs = [torch.tensor(c) for c in table.layer_costs(space)]
    probs = Supernet(space).probabilities()  # uniform: half mb, half skip in each layer
    assert float(obj.expected_latency(probs, costs, table.fixed_ms)) == pytest.approx(0.1 + 2 * 0.5 * 0.3)


def test_latency_penalty_forms():
    ce, lat = torch.tensor(2.0), torch.tensor(0.6)
    assert float(obj.latency_loss(ce, lat, 0.5, "add", weight=0.1)) == pytest.approx(2.0 + 0.1 * 0.1 / 0.5)
    us = lambda v: v * 1000 + math.e  # noqa: E731
    expect = 2.0 * (math.log(us(0.6)) / math.log(us(0.5))) ** 0.3
    assert float(obj.latency_loss(ce, lat, 0.5, "mul", beta=0.3)) == pytest.approx(expect)
    assert float(obj.latency_loss(ce, torch.tensor(0.4), 0.5, "mul")) < 2.0  # under budget: a discount
    with pytest.raises(ValueError):
        obj.latency_loss(ce, lat, 0.5, "pow")


def test_entropy_schedule_matches_quantnas_examples():
    values = {e: obj.entropy_schedule(e, 20, 9) for e in range(20)}
    assert all(values[e] == 0.0 for e in range(0, 11))
    assert values[11] == pytest.approx(0.06, abs=0.005)
    assert values[14] == pytest.approx(0.35, abs=0.005)
    assert values[19] == pytest.approx(1.0)
    assert all(values[e] <= values[e + 1] for e in range(19))


def test_entropy_value():
    p = [torch.full((4,), 0.25), torch.tensor([1.0, 0.0])]
    assert float(obj.entropy(p)) == pytest.approx(math.log(4))


def test_op_cost_by_hand():
    # MBConv k3 e3 8->8 at 4x4: expand 8*24, depthwise 24*9, project 24*8 MACs per pixel
    c = op_cost("mb_k3_e3", 8, 8, 1, 4)
    assert c.macs == 16 * (8 * 24 + 24 * 9 + 24 * 8)
    assert op_cost("mb_k3_e3_sp75", 8, 8, 1, 4).eff_macs == pytest.approx(0.25 * c.macs)
    assert op_cost("mb_k3_e3_sp75", 8, 8, 1, 4).kept_params == pytest.approx(0.25 * c.params)


def test_bitops_table_scales_with_both_bit_widths():
    space = SpaceConfig(image_size=4, stem=8, stages=(StageConfig(8, 1, 1),), ops=("mb_k3_e3", "skip"), bits=(4, 8))
    (row,) = layer_costs(space, "bitops")
    macs = op_cost("mb_k3_e3", 8, 8, 1, 4).macs
    assert row == [macs * 16, macs * 64, 0.0, 0.0]
    from edgenas.space.arch import Arch

    a8 = Arch.parse("r4_i1_stem8|mb_k3_e3_c8_s1_w8a8|head16_n10")
    a4 = Arch.parse("r4_i1_stem8|mb_k3_e3_c8_s1_w4a4|head16_n10")
    assert arch_bitops(a8) - arch_bitops(a4) == pytest.approx(macs * (64 - 16))


def test_hinge_penalises_only_latency_above_the_budget():
    ce = torch.tensor(1.0)
    below, above = torch.tensor(0.5, requires_grad=True), torch.tensor(1.5, requires_grad=True)
    assert float(obj.latency_loss(ce, below, 1.0, "hinge", 0.5)) == pytest.approx(1.0)
    assert float(obj.latency_loss(ce, above, 1.0, "hinge", 0.5)) == pytest.approx(1.25)
    obj.latency_loss(ce, below, 1.0, "hinge", 0.5).backward()
    assert float(below.grad) == 0.0                 # no reward for going further below the budget
    # the additive form keeps rewarding latency under the budget
    assert float(obj.latency_loss(ce, torch.tensor(0.5), 1.0, "add", 0.5)) == pytest.approx(0.75)


def test_beta_decay_is_the_mean_logsumexp_and_pulls_the_leading_alpha_hardest():
    a = [torch.tensor([2.0, 0.0], requires_grad=True), torch.tensor([0.0, 0.0, 0.0], requires_grad=True)]
    loss = obj.beta_decay(a)
    assert float(loss) == pytest.approx((math.log(math.exp(2) + 1) + math.log(3)) / 2)
    loss.backward()
    assert float(a[0].grad[0]) > float(a[0].grad[1]) > 0
    assert torch.allclose(a[1].grad, torch.full((3,), 1 / 6))


def test_linear_ramp_runs_from_start_at_the_first_alpha_epoch_to_end_at_the_last():
    assert [obj.linear_ramp(e, 5, 1, 0.0, 2.0) for e in range(5)] == [0.0, 0.0, pytest.approx(2 / 3), pytest.approx(4 / 3), 2.0]
    assert [obj.linear_ramp(e, 3, 0, 1.0, 0.0) for e in range(3)] == [1.0, 0.5, 0.0]


def test_the_default_budget_is_the_expected_latency_at_uniform_alphas():
    space = SpaceConfig(image_size=8, stages=(StageConfig(8, 2, 1),), stem=8, ops=("mb_k3_e3", "mb_k5_e3", "skip"))
    table = LatencyTable("t", {op_key("mb_k3_e3", 8, 8, 8, 1, 8): 0.3, op_key("mb_k5_e3", 8, 8, 8, 1, 8): 0.6}, fixed_ms=0.1)
    assert obj.default_budget(table, space) == pytest.approx(0.1 + 2 * (0.3 + 0.6 + 0.0) / 3)
