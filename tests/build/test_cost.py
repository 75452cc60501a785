"""The search cost in device-hours per device type and the ranks' speed-up bound (build/cost.py)."""

from __future__ import annotations

from edgenas.build.cost import add_segment, cost_line, search_cost


def test_device_hours_count_every_rank_and_the_measuring_host(tmp_path):
    f = tmp_path / "compute.json"
    assert search_cost(f) == {} and cost_line({}) == ""
    add_segment(f, "profile", 360.0, 0.0, 0.0, "cpu: X", 1, "x86-avx2 (local)")
    add_segment(f, "search", 1800.0, 1800.0, 3240.0, "cpu: X", 2, "x86-avx2 (local)")   # resumed with 2 ranks
    add_segment(f, "search", 720.0, 720.0, 720.0, "cpu: X", 1, "x86-avx2 (local)")
    add_segment(f, "train_fp32", 999.0, 999.0, 999.0, "cpu: X", 1, "x86-avx2 (local)")  # not search cost
    cost = search_cost(f)
    assert cost["device_hours"] == {"cpu: X": 1.2, "x86-avx2 (local)": 0.1}   # 2 x 0.5 h + 0.2 h; 0.1 h profiling
    assert cost["processes"] == [1, 2]
    assert cost["speedup_bound"] == round((3240 + 720) / (1800 + 720), 2)
    line = cost_line(cost)
    assert "1.2000 h cpu: X" in line and "1/2 training process(es)" in line and "at most 1.57x" in line
