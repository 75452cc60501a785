"""A build measured through the loopback farm survives losing every server: it stops with one line,
keeps its finished stages, and ``--resume`` completes once servers are back."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from buildkit import edgenas_cmd, tiny_build_args
from edgenas import records
from edgenas.build.manifest import Manifest


def _completed(out) -> dict:
    p = out / "state.json"
    return json.loads(p.read_text())["completed"] if p.exists() else {}


@pytest.mark.slow  # a whole build measured through the farm, op table included (~11 min on a busy 2-core box);
# the default run has issue 5's acceptance through `edgenas compile` (test_farm_tuning) and failover in test_failover
def test_build_through_farm_fails_cleanly_then_resumes(loopback_farm, tmp_path, tiny_recipe):
    loopback_farm.ensure(2)
    out = tmp_path / "run"
    args = [*tiny_build_args(out, tiny_recipe), "--tracker", loopback_farm.tracker, "--key", loopback_farm.key]
    proc = subprocess.Popen(edgenas_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 900
    while "op_table" not in _completed(out) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    for pid in loopback_farm.server_pids():
        loopback_farm.kill(pid)
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 1, err[-2000:]
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Traceback" not in err, err[-2000:]
    assert "op_table" in _completed(out) and "measure" not in _completed(out)

    loopback_farm.ensure(2)
    resumed = subprocess.run(edgenas_cmd(*args, "--resume"), capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    m = records.load(out / "manifest.json", Manifest)
    assert m.latency["where"].startswith("rpc") or loopback_farm.key in m.latency["device"], m.latency
    journal = [json.loads(line)["data"] for line in (out / "measurements.jsonl").read_text().splitlines()]
    assert len(journal) >= 2   # every measurement went through the farm, and names the target
    assert {(j["target"], j["key"]) for j in journal} == {("x86-avx2", loopback_farm.key)}
