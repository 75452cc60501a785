"""An emulated Raspberry Pi 4 in the loopback farm (issue 18, point 2): aarch64 TVM RPC servers
under qemu-user (``scripts/farm start N --arch aarch64``) run cross-compiled libraries for real,
and every latency taken on them is flagged ``emulated: true`` (docs/farm.md)."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from buildkit import edgenas_cmd, tiny_build_args, tiny_qdq_model
from edgenas import records
from edgenas.measure.protocol import Protocol
from edgenas.measure.rpc import Farm
from edgenas.target import get_target

from .conftest import TINY_SHAPE, build_tiny_int8, tiny_reference

RPI4 = get_target("rpi4")
QUICK = Protocol(min_samples=10, max_samples=30)
QDQ_SHAPE = (1, 3, 16, 16)


@pytest.fixture(scope="module")
def tiny_a64(tmp_path_factory):
    return build_tiny_int8(tmp_path_factory.mktemp("a64") / "tiny_rpi4.so", RPI4.tvm_target, RPI4.cross_compiler)


def _journal(path) -> list[dict]:
    return [json.loads(line)["data"] for line in path.read_text().splitlines()]


def test_emulated_rpi4_runs_exactly_and_its_measurements_say_emulated(emulated_farm, loopback_farm, tiny_a64, tiny_lib,
                                                                      tmp_path):
    status = emulated_farm.script("status")
    assert "rpi4" in status and "aarch64" in status            # the state names each server's arch
    farm = Farm(emulated_farm.tracker, "rpi4", target="rpi4", timeout_s=120, protocol=QUICK)
    x = np.random.default_rng(1).standard_normal((2, *TINY_SHAPE[1:])).astype("float32")
    assert np.abs(farm.run(tiny_a64, x) - tiny_reference(x)).max() < 1e-4   # the aarch64 library, run for real

    journal = tmp_path / "measurements.jsonl"
    m = farm.measurement(tiny_a64, TINY_SHAPE, journal=journal)
    assert m.stats.emulated and "qemu-aarch64" in m.stats.device and m.stats.median_ms > 0
    # a native server of the x86 farm is not emulated: the flag comes from the server, not the key
    x86 = Farm(loopback_farm.tracker, loopback_farm.key, target="x86-avx2", protocol=QUICK)
    assert not x86.measurement(tiny_lib, TINY_SHAPE, journal=journal).stats.emulated
    assert [j["stats"]["emulated"] for j in _journal(journal)] == [True, False]


@pytest.mark.slow  # the whole loop through qemu: op table, search, feedback, compile, measure (~15-25 min loaded)
def test_tiny_rpi4_build_through_the_emulated_farm(emulated_farm, tiny_recipe, tmp_path):
    from edgenas.build.manifest import Manifest

    out = tmp_path / "run"
    args = [*tiny_build_args(out, tiny_recipe), "--target", "rpi4", "--tracker", emulated_farm.tracker, "--key", "rpi4"]
    proc = subprocess.run(edgenas_cmd(*args), capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = records.load(out / "manifest.json", Manifest)
    assert m.target == "rpi4" and m.latency["emulated"] is True and "qemu" in m.latency["device"]
    journal = _journal(out / "measurements.jsonl")
    assert len(journal) >= 3 and all(j["stats"]["emulated"] and j["target"] == "rpi4" for j in journal)
    assert m.rounds and all(r["measured_ms"] > 0 for r in m.rounds)   # feedback measured through the farm
    assert "emulated" in proc.stdout and "emulated" in (out / "report.html").read_text()
    assert (out / "rpi4" / "manifest.json").is_file()   # the bundle (verified under qemu by the build)


@pytest.mark.slow  # MetaSchedule candidates measured under qemu (~30 s each)
def test_tuning_through_the_emulated_farm(emulated_farm, tmp_path):
    from edgenas.compile import compile_onnx, tuning_db

    model = tiny_qdq_model(tmp_path, QDQ_SHAPE)
    farm = Farm(emulated_farm.tracker, "rpi4", target="rpi4", timeout_s=120, protocol=QUICK)
    db = tmp_path / "tl"
    res = compile_onnx(model, RPI4, tmp_path / "m.so", trials=4, tuning_dir=db, farm=farm)
    assert res.trials >= 4 and res.failed_runs < res.trials and tuning_db.count_records(db) == res.trials
    assert farm.measurement(res.library, QDQ_SHAPE).stats.emulated

