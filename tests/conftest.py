"""Shared fixtures. Tests never write into the committed tuning_logs/: EDGENAS_TUNING_LOGS points at
one temp dir per session (so the op table is profiled once and shared by every build test)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from buildkit import edgenas_cmd, run_cli, tiny_build_args

BUILD_TIMEOUT_S = 1800

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def tuning_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tuning_logs")
    os.environ["EDGENAS_TUNING_LOGS"] = str(root)
    return root


@pytest.fixture(scope="session", autouse=True)
def config_home(tmp_path_factory) -> Path:
    """Signing keys are generated into the user's config dir on first use: tests get their own."""
    home = tmp_path_factory.mktemp("config")
    os.environ["XDG_CONFIG_HOME"] = str(home)
    os.environ.pop("EDGENAS_SIGNING_KEY", None)
    return home


_AFFINITY = os.sched_getaffinity(0)


@pytest.fixture(autouse=True)
def _cores_back():
    """TVM's runtime binds the calling thread to one core when a test runs a library in this
    process; every build a later test starts as a subprocess would inherit that mask and train
    with one torch thread instead of two (other float sums: the kill/resume equality tests
    compare against a build made before). Give the main thread its cores back after each test."""
    yield
    if os.sched_getaffinity(0) != _AFFINITY:
        os.sched_setaffinity(0, _AFFINITY)


@pytest.fixture(scope="session")
def tiny_recipe(tmp_path_factory) -> Path:
    """The default recipe with a one-epoch QAT, for fast builds."""
    text = (REPO / "quant" / "int8-per-channel.toml").read_text().replace("epochs = 6", "epochs = 1")
    p = tmp_path_factory.mktemp("recipes") / "int8-fast.toml"
    p.write_text(text)
    return p


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_recipe):
    """One complete tiny build, shared by every test that only reads a finished run directory
    (and the reference the kill/resume tests compare against)."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    proc = subprocess.run(edgenas_cmd(*tiny_build_args(out, tiny_recipe)), capture_output=True, text=True,
                          timeout=BUILD_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


# One tiny two-round build shared by the bundle and report tests (tests/bundle, tests/report),
# built once per session. Two rounds (of two search epochs each), because the report's per-round
# table and alpha trajectories are only tested honestly when there is more than one round.
# Bundles are written once per target and copied by any test that changes bytes, so the shared
# ones stay valid.
@pytest.fixture(scope="session")
def built_run(tmp_path_factory, tiny_recipe) -> Path:
    out = tmp_path_factory.mktemp("artifacts") / "run"
    args = tiny_build_args(out, tiny_recipe, search_epochs=2) + ["--rounds", "2"]  # the last --rounds wins
    proc = subprocess.run(edgenas_cmd(*args), capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def bundles_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bundles")


@pytest.fixture(scope="session")
def x86_bundle(built_run, bundles_dir) -> Path:
    proc = run_cli("package", str(built_run), "--target", "x86-avx2", "--out", str(bundles_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return bundles_dir / "x86-avx2"


@pytest.fixture()
def bundle_copy(x86_bundle, tmp_path) -> Path:
    """A private copy of the x86 bundle for tests that change bytes."""
    dst = tmp_path / "x86-avx2"
    shutil.copytree(x86_bundle, dst)
    return dst
