"""On a real device farm: EDGENAS_TRACKER=HOST:PORT, EDGENAS_KEY=KEY and (for a cross-compiled
device) EDGENAS_DEVICE_TARGET=NAME of a target in targets/ (default x86-avx2). Skipped, with the
reason, when the tracker or the key is not set. Run with ``scripts/test -m device``."""

from __future__ import annotations

import os

import numpy as np
import pytest

from edgenas.measure.gate import BenchItem, bench
from edgenas.measure.rpc import Farm
from edgenas.target import get_target

from .conftest import TINY_SHAPE, build_tiny_int8, tiny_reference

TRACKER, KEY = os.environ.get("EDGENAS_TRACKER"), os.environ.get("EDGENAS_KEY")
TARGET = os.environ.get("EDGENAS_DEVICE_TARGET", "x86-avx2")
pytestmark = [pytest.mark.device,
              pytest.mark.skipif(not (TRACKER and KEY), reason="set EDGENAS_TRACKER=HOST:PORT and EDGENAS_KEY=KEY "
                                                                "to run the device-farm tests")]


@pytest.fixture(scope="module")
def device_lib(tmp_path_factory):
    spec = get_target(TARGET)
    spec.check_host_prerequisites()
    return build_tiny_int8(tmp_path_factory.mktemp("dev") / f"tiny_{spec.name}.so", spec.tvm_target, spec.cross_compiler)


def test_device_measures_and_matches_the_reference(device_lib):
    farm = Farm(TRACKER, KEY, target=TARGET, timeout_s=120)
    farm.check()
    m = farm.measurement(device_lib, TINY_SHAPE, repeat=20)
    assert m.stats.median_ms > 0 and m.device_id
    x = np.random.default_rng(5).standard_normal((4, *TINY_SHAPE[1:])).astype("float32")
    np.testing.assert_allclose(farm.run(device_lib, x), tiny_reference(x), rtol=1e-5, atol=1e-5)


def test_device_regression_gate(device_lib, tmp_path):
    spec = get_target(TARGET)
    rep = bench([BenchItem("tiny", str(device_lib), TINY_SHAPE)], spec, tmp_path / "b.json", farm=Farm(TRACKER, KEY, target=spec.name, timeout_s=120))
    assert rep.passed and rep.rows[0].status == "new"
