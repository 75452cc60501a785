"""``TuningStore``: one target's measured state on this host, at the root tests point to."""

from __future__ import annotations

import dataclasses
import json

from edgenas import records
from edgenas.compile.kernel_version import KERNEL_VERSION
from edgenas.latency.dataset import LatencyDataset, LatencyPoint
from edgenas.latency.table import LatencyTable
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


def _files(d):
    return sorted(p.name for p in d.iterdir() if not p.name.endswith(".lock"))


def test_an_op_table_of_the_current_kernels_is_used_and_one_of_other_kernels_is_set_aside(monkeypatch, tmp_path, capsys):
    """A table profiled with other kernels (or before tables were stamped) is never read: it moves
    to a free ``op_latency.stale-<stamp>.json`` (never over an earlier one), with one line, and
    the store starts empty; nothing else in the store is touched."""
    monkeypatch.setenv("EDGENAS_TUNING_LOGS", str(tmp_path))
    store = TuningStore(get_target("x86-avx2"))
    assert store.kernels == f"v{KERNEL_VERSION}-avx2-w7"
    key = "mb_k3_e3|w8|16->16|s1|8x8"
    store.save_op_table(LatencyTable("x86-avx2", {key: 0.5}, 0.25, kernels=store.kernels))
    store.dir.joinpath("notes.txt").write_text("mine")
    assert store.op_table() == LatencyTable("x86-avx2", {key: 0.5}, 0.25, kernels=store.kernels)
    assert capsys.readouterr().err == ""

    old = {"type": "latency_table", "version": 1, "data": {"target": "x86-avx2", "entries": {key: 9.0}, "fixed_ms": 1.0}}
    stale = [("v0-avx2-w8", "op_latency.stale-v0-avx2-w8.json"), (None, "op_latency.stale-unstamped.json"),
             (None, "op_latency.stale-unstamped-2.json")]
    for stamp, aside in stale:
        data = {**old["data"], **({"kernels": stamp} if stamp else {})}
        text = json.dumps({**old, "data": data})
        store.op_table_file.write_text(text)
        assert store.op_table() == LatencyTable("x86-avx2", kernels=store.kernels)
        assert (store.dir / aside).read_text() == text and not store.op_table_file.exists()
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "op table" in err[0] and store.kernels in err[0] and aside in err[0], err
        assert (stamp or "before kernel versions were stamped") in err[0]
    assert _files(store.dir) == sorted(["notes.txt"] + [a for _, a in stale])


def test_a_target_with_other_int8_fields_does_not_use_the_table(monkeypatch, tmp_path, capsys):
    """``weight_bits`` decides the width every op is timed at, so it is part of the stamp."""
    monkeypatch.setenv("EDGENAS_TUNING_LOGS", str(tmp_path))
    spec = get_target("x86-avx2")
    store, eight = TuningStore(spec), TuningStore(dataclasses.replace(spec, int8_weight_bits=8))
    store.save_op_table(LatencyTable("x86-avx2", {"a": 1.0}, kernels=store.kernels))
    assert eight.op_table().entries == {}
    assert (store.dir / f"op_latency.stale-{store.kernels}.json").is_file()
    assert "w7" in capsys.readouterr().err


def test_a_table_of_other_kernels_is_not_saved_over_the_current_one(monkeypatch, tmp_path):
    """A run resumed from before a kernel change goes on with its own table; it stays out of the store."""
    monkeypatch.setenv("EDGENAS_TUNING_LOGS", str(tmp_path))
    store = TuningStore(get_target("x86-avx2"))
    store.save_op_table(LatencyTable("x86-avx2", {"a": 1.0}, kernels=store.kernels))
    store.save_op_table(LatencyTable("x86-avx2", {"a": 9.0}))
    assert store.op_table().entries == {"a": 1.0}


def test_latency_points_of_other_kernels_are_set_aside_and_not_reused(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("EDGENAS_TUNING_LOGS", str(tmp_path))
    store = TuningStore(get_target("x86-avx2"))
    arch = "r8_i1_stem16|skip_c16_s1_w8a8|head64_n10"
    records.save(store.latency_points_file, LatencyDataset("x86-avx2", (LatencyPoint(arch, 9.0, measured_at=1.0),),
                                                           kernels="v0-avx2-w7"))
    store.add_latency_points(LatencyPoint(arch, 0.1, where="local", round=1))
    assert [p.measured_ms for p in store.latency_points().points] == [0.1]
    assert records.load(store.latency_points_file, LatencyDataset).kernels == store.kernels
    kept = records.load(store.dir / "latency_points.stale-v0-avx2-w7.json", LatencyDataset)
    assert [p.measured_ms for p in kept.points] == [9.0]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "latency points" in err[0] and "latency_points.stale-v0-avx2-w7.json" in err[0], err
