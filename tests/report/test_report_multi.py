"""The multi-target report page, rendered from a ``multi.json`` as ``build.multi`` writes it."""

from __future__ import annotations

import json

from edgenas.report.multi import write_multi_report

A, B = "r8_i1_stem16|mb_k3_e3_c16_s1_w8a8|head64_n10", "r8_i1_stem16|skip_c16_s1_w8a8|head64_n10"


def _cand(arch, ms, acc, source="search", chosen=False, on_front=True):
    return {"arch": arch, "measured_ms": ms, "inherited_acc": acc, "source": source, "chosen": chosen, "on_front": on_front}


def _multi():
    return {"targets": ["x86-avx2", "rpi4"],
            "fronts": {"x86-avx2": {"candidates": [_cand(B, 0.02, 0.6), _cand(A, 0.04, 0.8, chosen=True)],
                                    "chosen": {"arch": A, "int8_acc": 0.95, "latency_ms": 0.04, "where": "local:vm"}},
                       "rpi4": {"candidates": [_cand(B, 0.9, 0.6, chosen=True),
                                               _cand(A, 2.7, 0.8, source="chosen for x86-avx2")],
                                "chosen": {"arch": B, "int8_acc": 0.9, "latency_ms": 0.9, "where": "rpc rpi4",
                                           "emulated": True}}},
            "cross": [{"model_of": "x86-avx2", "on": "rpi4", "arch": A, "measured_ms": 2.7, "where": "rpc rpi4"},
                      {"model_of": "rpi4", "on": "x86-avx2", "arch": B, "measured_ms": 0.02, "where": "local:vm"}],
            "verified": {"x86-avx2": "ok", "rpi4": "ok"},
            "seconds": {"supernet": 30.0, "target x86-avx2": 100.0, "target rpi4": 300.0, "cross": 20.0, "wall": 450.0},
            "sub_runs": {"x86-avx2": "OUT/x86-avx2", "rpi4": "OUT/rpi4"}}


def test_fronts_side_by_side_with_cross_target_cost(tmp_path):
    (tmp_path / "multi.json").write_text(json.dumps(_multi()))
    html = write_multi_report(tmp_path).read_text()
    assert (tmp_path / "report" / "fronts.png").stat().st_size > 1000
    # the x86 model on the board beside the board's own model: 2.7 ms = 3.00x rpi4's 0.9 ms
    assert "2.7000 (3.00× rpi4&#x27;s own)" in html
    assert "<b>0.9000</b>" in html and "<b>0.0400</b>" in html
    chosen = html[html.index('id="chosen"'):html.index('id="fronts"')]
    assert chosen.count("<tr>") == 3 and "rpc rpi4" in chosen and "yes" in chosen   # rpi4 flagged emulated
    assert "450.0" in html[html.index('id="cost-table"'):]
