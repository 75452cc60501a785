"""``runner_for``: how a library is reached is chosen once, from the target's data."""

from __future__ import annotations

import platform

import pytest

from edgenas.errors import UsageError
from edgenas.measure.runners import FarmRunner, LocalRunner, NoRunner, QemuRunner, device_runner, host_flags, runner_for
from edgenas.target import get_target

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64", reason="the table below is for an x86-64 host")


@pytest.mark.parametrize("name, kind", [("x86-avx2", LocalRunner), ("rpi4", QemuRunner), ("jetson-orin", NoRunner),
                                        ("cuda-sm80", NoRunner)])
def test_each_target_gets_the_runner_its_data_says(name, kind):
    runner = runner_for(get_target(name))
    assert type(runner) is kind


def test_a_farm_wins_and_names_its_key():
    class FakeFarm:   # only what FarmRunner reads: the Farm's identity
        target, key = "rpi4", "rpi4-lab"

    runner = runner_for(get_target("rpi4"), FakeFarm())
    assert isinstance(runner, FarmRunner) and runner.where == "rpc rpi4-lab"


def test_what_cannot_run_here_says_why_and_refuses_to_measure(tmp_path):
    cuda = runner_for(get_target("cuda-sm80"))
    assert "GPU" in cuda.unavailable()
    with pytest.raises(UsageError, match="--tracker"):
        cuda.measure(tmp_path / "x.so", (1, 1, 8, 8))
    with pytest.raises(UsageError, match="cannot be measured here"):
        runner_for(get_target("rpi4")).measure(tmp_path / "x.so", (1, 1, 8, 8))   # emulated time means nothing


def test_a_local_library_needs_the_cpu_flags_of_its_mcpu():
    runner = device_runner("t", {"kind": "llvm", "mcpu": "cascadelake"}, "x86_64")
    lacking = {"avx512f", "avx512_vnni"} - host_flags()
    assert (runner.unavailable() is None) == (not lacking)
    assert device_runner("t", {"kind": "llvm", "mcpu": "haswell"}, "aarch64").__class__ is QemuRunner
    # x86-avx-vnni's {vex} vpdpbusd needs AVX-VNNI itself: AVX-512 VNNI does not run it
    alderlake = device_runner("t", {"kind": "llvm", "mcpu": "alderlake"}, "x86_64")
    assert (alderlake.unavailable() is None) == ("avx_vnni" in host_flags())
