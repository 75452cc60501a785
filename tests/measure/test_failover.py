"""Fail-over: a server killed mid-run, every server gone (one line), and recovery after a restart."""

from __future__ import annotations

import threading
import time

import pytest

from edgenas.errors import EdgenasError
from edgenas.measure.protocol import Protocol
from edgenas.measure.rpc import Farm

from .conftest import TINY_SHAPE

# ~3 s of sampling, so that a server can be killed while it measures
LONG = Protocol(min_samples=60, max_samples=60, batch=60, sample_ms=50)


def test_a_server_killed_mid_measurement_leaves_the_other_to_finish(loopback_farm, tiny_lib):
    loopback_farm.ensure(2)
    farm = Farm(loopback_farm.tracker, loopback_farm.key, target="x86-avx2", timeout_s=30, retries=3, protocol=LONG)
    box = {}
    worker = threading.Thread(target=lambda: box.update(m=farm.measurement(tiny_lib, TINY_SHAPE)))
    worker.start()
    victim = loopback_farm.busy_server()
    loopback_farm.kill(victim)
    worker.join(120)
    assert not worker.is_alive() and "m" in box
    lost, ok = farm.attempts[0], farm.attempts[-1]
    assert lost.outcome.startswith("lost") and ok.outcome == "ok" and ok.server != lost.server
    assert box["m"].device_id == ok.server and box["m"].stats.n == 60
    assert victim not in loopback_farm.server_pids()


def test_with_no_server_left_it_fails_in_one_line_and_recovers_after_a_restart(loopback_farm, tiny_lib):
    for pid in loopback_farm.server_pids():
        loopback_farm.kill(pid)
    farm = Farm(loopback_farm.tracker, loopback_farm.key, target="x86-avx2", timeout_s=3, retries=2,
                protocol=Protocol(min_samples=10, max_samples=20))
    t = time.monotonic()
    with pytest.raises(EdgenasError) as e:
        farm.measure(tiny_lib, TINY_SHAPE)
    assert time.monotonic() - t < 3   # no server registered: no attempt waits out its deadline
    msg = str(e.value)
    assert "\n" not in msg and e.value.exit_code == 1
    assert f"no server for key '{loopback_farm.key}' at {loopback_farm.tracker} answered within 3 s" in msg
    assert "tried 2 times" in msg and "no server is registered" in msg and "0 registered now" in msg
    loopback_farm.ensure(1)
    assert farm.measure(tiny_lib, TINY_SHAPE).median_ms > 0
