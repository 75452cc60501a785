"""``TuningStore``: one target's measured state on this host, at the root tests point to."""

from __future__ import annotations

from edgenas.latency.dataset import LatencyPoint
from edgenas.target import get_target
from edgenas.tuning_store import TuningStore


def test_the_store_lives_under_the_tuning_root_and_keeps_points(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGENAS_TUNING_LOGS", str(tmp_path))
    store = TuningStore(get_target("x86-avx2"))
    assert store.dir == tmp_path / "x86-avx2" and store.database_dir == store.dir
    assert store == TuningStore.named("x86-avx2")
    assert store.op_table().entries == {} and store.latency_points().points == ()
    arch = "r8_i1_stem16|skip_c16_s1_w8a8|head64_n10"
    store.add_latency_points(LatencyPoint(arch, 0.1, where="local", round=1))
    store.add_latency_points(LatencyPoint(arch, 0.2, where="local", round=2))
    assert [p.measured_ms for p in store.latency_points().points] == [0.1, 0.2]
    assert not store.forget_op_table()
