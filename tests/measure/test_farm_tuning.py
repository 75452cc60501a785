"""Tuning through the farm (MetaSchedule's RPC runner on the loopback tracker): a server killed
mid-tuning leaves the other to finish and measure; with every server gone the tuning stops with
one line, keeps what it measured, and a rerun (`edgenas compile --tracker`) completes once a
server is back. ``test_acceptance_...`` is issue 5's first acceptance criterion, end to end
through the CLI; the build's own farm path (``--resume``) is in test_build_farm."""

from __future__ import annotations

import os
import subprocess
import threading
import time

import numpy as np
import pytest

from buildkit import edgenas_cmd, tiny_qdq_model
from edgenas.compile import compile_onnx, tuning_db
from edgenas.measure.rpc import Farm
from edgenas.quantize.export import run_ort
from edgenas.target import get_target

SHAPE = (1, 3, 16, 16)
TRIALS = 12   # 6 tasks: 2 candidates each


@pytest.fixture(scope="module")
def qdq_model(tmp_path_factory):
    """A tiny INT8 QDQ model (conv-relu-conv-relu-pool-linear, onnxruntime ``quantize_static``)."""
    return tiny_qdq_model(tmp_path_factory.mktemp("farm_qdq"), SHAPE)


def _in_thread(fn):
    box: dict = {}

    def work():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - checked by the test
            box["error"] = e

    t = threading.Thread(target=work, daemon=True)
    t.start()
    return t, box


def _busy_while(farm, alive, what) -> int:
    """The pid of a server serving a tuning candidate, failing early (with ``what()``) if the
    compile ended first."""
    for _ in range(300):
        try:
            return farm.busy_server(timeout_s=1.0)
        except AssertionError:
            assert alive(), f"the compile ended before any candidate ran: {what()}"
    raise AssertionError("no server started a session within 300 s")


@pytest.mark.slow  # the acceptance test below also kills a server mid-tuning, in the default run
def test_tuning_through_the_farm_survives_a_killed_server(loopback_farm, qdq_model, tmp_path):
    loopback_farm.ensure(2)
    farm = Farm(loopback_farm.tracker, loopback_farm.key, target="x86-avx2", timeout_s=20, retries=3)
    spec, db = get_target("x86-avx2"), tmp_path / "tl"
    t, box = _in_thread(lambda: compile_onnx(qdq_model, spec, tmp_path / "m.so", trials=24, tuning_dir=db, farm=farm))
    victim = _busy_while(loopback_farm, t.is_alive, lambda: box)   # a server running a tuning candidate
    loopback_farm.kill(victim)
    t.join(900)
    assert not t.is_alive() and "error" not in box, box.get("error")
    res = box["value"]
    assert res.trials >= 24 and res.failed_runs < res.trials and res.tuned, res
    assert victim not in loopback_farm.server_pids() and len(loopback_farm.server_pids()) == 1
    assert tuning_db.count_records(db) == res.trials
    # measured and run on the survivor, numerically the model onnxruntime runs
    assert farm.measurement(res.library, SHAPE).stats.median_ms > 0
    x = np.random.default_rng(1).standard_normal((4, *SHAPE[1:])).astype("float32")
    ours, ref = farm.run(res.library, x), run_ort(qdq_model, x)
    assert (ours.argmax(1) == ref.argmax(1)).all() and np.abs(ours - ref).max() < 0.25


def _measured_per_workload(db) -> dict[str, int]:
    """Measured tuning records of the shared DB per workload (its line in the workload file).
    A candidate that failed to run is stored too, with a run time of 1e10 s; it measured nothing,
    and a task with only such records is tuned again."""
    import json

    workloads = (db / tuning_db.WORKLOADS).read_text().splitlines()
    counts: dict[str, int] = {}
    for line in (db / tuning_db.RECORDS).read_text().splitlines():
        index, (_trace, run_secs, *_rest) = json.loads(line)
        if run_secs and max(run_secs) < 1e9:
            counts[workloads[index]] = counts.get(workloads[index], 0) + 1
    return counts


def test_acceptance_compile_through_the_farm_survives_kills_and_reruns(loopback_farm, qdq_model, tmp_path):
    """Issue 5, acceptance 1, through the CLI (``edgenas compile --tracker --key --trials``) on a
    loopback tracker with two servers: every server killed mid-tuning fails the run with one line
    (exit 1, no library, the measured records kept); once servers are back the rerun tunes only
    what was not measured, survives one server killed mid-run, and measures on the other."""
    loopback_farm.ensure(2)
    logs, lib = tmp_path / "logs", tmp_path / "m.so"
    db = logs / "x86-avx2"
    cmd = edgenas_cmd("compile", str(qdq_model), "--target", "x86-avx2", "--out", str(lib), "--trials", str(TRIALS),
                      "--tracker", loopback_farm.tracker, "--key", loopback_farm.key)
    env = {**os.environ, "EDGENAS_TUNING_LOGS": str(logs)}

    served = loopback_farm.sessions_served()
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 300
    while loopback_farm.sessions_served() < served + 2:   # two candidates measured: the tuning is under way
        assert first.poll() is None, f"the compile ended before any candidate ran: {first.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, "no tuning candidate measured within 300 s"
        time.sleep(0.02)
    for pid in loopback_farm.server_pids():
        loopback_farm.kill(pid)
    _, err = first.communicate(timeout=600)
    lines = err.splitlines()
    assert first.returncode == 1 and len(lines) == 1, err[-2000:]
    assert lines[0].startswith("error: tuning stopped after") and "device farm" in lines[0]
    assert not lib.exists()   # nothing half-built where a library is expected
    kept = _measured_per_workload(db)
    assert kept, "the candidates measured before the kill were not kept"

    loopback_farm.ensure(2)
    rerun = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    victim = _busy_while(loopback_farm, lambda: rerun.poll() is None, lambda: rerun.communicate()[1][-2000:])
    loopback_farm.kill(victim)
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err[-2000:]
    assert lib.is_file() and "latency on the farm" in out and "Traceback" not in err
    assert victim not in loopback_farm.server_pids() and len(loopback_farm.server_pids()) == 1
    after = _measured_per_workload(db)
    assert all(after[w] >= n for w, n in kept.items()), "records measured by the first run were lost"
    # tuning resumes per trial (docs/tuning.md): the rerun spends only the trials the first run had left
    assert sum(after.values()) <= TRIALS, f"the rerun tuned again what the first run had spent: {sum(after.values())} > {TRIALS}"
    assert sum(after.values()) > sum(kept.values())
