"""The device farm through a real loopback tracker with two servers (scripts/farm)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from edgenas import records
from edgenas.errors import EdgenasError
from edgenas.cli.view import status_table
from edgenas.measure.farm_status import farm_status, status_rows
from edgenas.measure.protocol import Measurement, Protocol
from edgenas.measure.rpc import Farm
from edgenas.measure.stats import LatencyStats

from .conftest import TINY_SHAPE, _free_port, tiny_reference

QUICK = Protocol(min_samples=10, max_samples=30)


@pytest.fixture
def farm2(loopback_farm):
    loopback_farm.ensure(2)
    return loopback_farm


def test_status_shows_keys_and_free_servers(farm2):
    st = farm_status(farm2.tracker)
    row = st.key(farm2.key)
    assert (row.servers, row.free, row.busy, row.pending) == (2, 2, 0, 0)
    assert status_rows(st) == [{"key": farm2.key, "servers": 2, "free": 2, "busy": 0, "queued": 0}]
    assert status_table(st).row_count == 1


def test_measure_through_the_farm(farm2, tiny_lib, tmp_path):
    farm = Farm(farm2.tracker, farm2.key, target="x86-avx2", timeout_s=30, protocol=QUICK)
    m = farm.measurement(tiny_lib, TINY_SHAPE, journal=tmp_path / "j.jsonl")
    servers = {addr for addr, _ in farm_status(farm2.tracker).servers}
    assert m.device_id in servers and m.key == farm2.key and m.tracker == farm2.tracker
    assert m.stats.median_ms > 0 and m.stats.n >= 10 and m.threads >= 1 and m.target == "x86-avx2"
    assert isinstance(farm.measure(tiny_lib, TINY_SHAPE, repeat=10, journal=tmp_path / "j.jsonl"), LatencyStats)
    assert [a.outcome for a in farm.attempts] == ["ok", "ok"]
    assert len(tmp_path.joinpath("j.jsonl").read_text().splitlines()) == 2
    assert records.from_dict(records.to_dict(m), Measurement) == m
    st = farm_status(farm2.tracker).key(farm2.key)   # the sessions were released at once
    assert st.free == 2


def test_3000_samples_through_the_farm_and_local_errors_are_not_the_servers(farm2, tiny_lib, monkeypatch):
    """``--repeat 3000`` once overflowed the median's interval, and the farm blamed the server."""
    farm = Farm(farm2.tracker, farm2.key, target="x86-avx2", timeout_s=60)
    assert farm.measurement(tiny_lib, TINY_SHAPE, repeat=3000).stats.n == 3000

    from edgenas.measure import protocol

    def broken(*a, **k):
        raise OverflowError("int too large to convert to float")

    monkeypatch.setattr(protocol, "median_ci", broken)   # a bug in this client's own statistics
    with pytest.raises(OverflowError):
        farm.measurement(tiny_lib, TINY_SHAPE, repeat=10)
    assert [a.outcome for a in farm.attempts] == ["ok"]   # no server was blamed, nothing retried


def test_remote_outputs_match_local(farm2, tiny_lib):
    from edgenas.measure.local import run_local

    x = np.random.default_rng(3).standard_normal((3, *TINY_SHAPE[1:])).astype("float32")
    remote = Farm(farm2.tracker, farm2.key, target="x86-avx2").run(tiny_lib, x)
    np.testing.assert_allclose(remote, run_local(str(tiny_lib), x), rtol=0, atol=1e-6)
    np.testing.assert_allclose(remote, tiny_reference(x), rtol=1e-5, atol=1e-5)


def test_cli_farms_record_their_target(farm2, tiny_lib):
    """``--tracker`` on build, compile, measure and bench makes its Farm with
    ``cli.options.farm_from_options``: every measurement it takes names the target (given as a
    name or as a TOML path)."""
    from edgenas.cli.options import farm_from_options
    from edgenas.target import get_target

    from .conftest import REPO

    for given in ("x86-avx2", str(REPO / "targets" / "x86-avx2.toml")):
        farm = farm_from_options(farm2.tracker, farm2.key, get_target(given))
        assert farm.target == "x86-avx2" and farm.measurement(tiny_lib, TINY_SHAPE, protocol=QUICK).target == "x86-avx2"


def test_a_broken_library_fails_at_once_in_one_line(farm2, tiny_lib):
    farm = Farm(farm2.tracker, farm2.key, target="x86-avx2", timeout_s=20, retries=3)
    with pytest.raises(EdgenasError) as e:
        farm.run(tiny_lib, np.zeros((1, 3, 5, 5), "float32"))     # wrong input shape
    assert "\n" not in str(e.value) and farm2.key in str(e.value)
    assert farm.attempts == []   # not a lost server: no retry on the other one


def test_an_unreachable_tracker_is_one_line(tiny_lib):
    t = time.monotonic()
    with pytest.raises(EdgenasError, match="cannot reach the RPC tracker") as e:
        Farm(f"127.0.0.1:{_free_port()}", "k", target="x86-avx2").measure(tiny_lib, TINY_SHAPE)
    assert "\n" not in str(e.value) and time.monotonic() - t < 5


def test_check_names_a_key_without_servers(farm2):
    with pytest.raises(EdgenasError, match="no server is registered for key 'nope'"):
        Farm(farm2.tracker, "nope", target="x86-avx2").check()


def test_metaschedule_rpc_runner_measures_through_the_farm(farm2, tmp_path):
    import tvm
    from tvm import te
    from tvm.s_tir import meta_schedule as ms

    from edgenas.compile.tune import EVALUATOR

    a = te.placeholder((64, 64), "float32", name="A")
    b = te.compute((64, 64), lambda i, j: a[i, j] * 2.0, name="B")
    lib = tvm.compile(tvm.IRModule({"main": te.create_prim_func([a, b])}),
                      target=tvm.target.Target({"kind": "llvm", "mcpu": "haswell"}))
    artifact = tmp_path / "candidate.tar"            # what MetaSchedule's LocalBuilder exports
    lib.export_library(str(artifact))
    runner = Farm(farm2.tracker, farm2.key, target="x86-avx2", timeout_s=60).ms_runner()
    args = [ms.arg_info.TensorInfo("float32", [64, 64])] * 2
    results = [f.result() for f in runner.run([ms.runner.RunnerInput(str(artifact), "cpu", args)] * 2)]
    assert [r.error_msg for r in results] == [None, None]
    # timed as the local tuner times (tune.EVALUATOR: one call per sample, caches flushed)
    assert all(len(r.run_secs) == EVALUATOR["repeat"] and all(float(s) > 0 for s in r.run_secs) for r in results)


@pytest.mark.slow
def test_tune_a_tiny_int8_model_through_the_farm_then_measure_it(farm2, tmp_path):
    """MetaSchedule tuning with the farm's RPCRunner, then the tuned library measured and checked
    through the farm (~2 min on a busy 2-core box)."""
    from edgenas.compile import build, pipeline, tune, tuning_db
    from edgenas.target import get_target

    from .conftest import tiny_int8_module

    spec = get_target("x86-avx2")
    farm = Farm(farm2.tracker, farm2.key, target="x86-avx2", timeout_s=60, protocol=QUICK)
    fused = pipeline.fuse(tiny_int8_module(), spec)
    stats = tune.tune(fused, spec, str(tmp_path / "db"), 4, runner=farm.ms_runner())
    assert stats.trials >= 4 and stats.run_errors == 0
    database, n_records = tuning_db.load(tmp_path / "db", tune.MODULE_EQUALITY)
    assert n_records >= 2
    lib, _skipped = build.build(fused, spec, tmp_path / "tuned.so", database)
    assert farm.measurement(lib, TINY_SHAPE).stats.median_ms > 0
    x = np.random.default_rng(4).standard_normal((2, *TINY_SHAPE[1:])).astype("float32")
    np.testing.assert_allclose(farm.run(lib, x), tiny_reference(x), rtol=1e-5, atol=1e-5)
