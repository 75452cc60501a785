"""One tiny two-round build shared by the bundle and report tests (package scope: built once).

Two rounds (of two search epochs each), because the report's per-round table and α trajectories
are only tested honestly when there is more than one round. Bundles are written once per target and copied by any test
that changes bytes, so the shared ones stay valid.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from buildkit import edgenas_cmd, tiny_build_args

BUILD_TIMEOUT_S = 1800


def run_cli(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """``edgenas ARGS`` through ``edgenas.cli.main``, the console script's entry point.

    Not ``python -m edgenas.cli``: that runs cli.py as ``__main__``, a second copy of the module,
    and the commands of ``COMMAND_MODULES`` register on the first copy's app, so ``package``,
    ``verify`` and ``report`` would be unknown there.
    """
    cmd = [sys.executable, "-c", "from edgenas.cli import main; main()", *args]
    env = {**os.environ, "COLUMNS": "250"}  # rich wraps tables at 80 columns when not on a terminal
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="package")
def built_run(tmp_path_factory, tiny_recipe) -> Path:
    out = tmp_path_factory.mktemp("artifacts") / "run"
    args = tiny_build_args(out, tiny_recipe, search_epochs=2) + ["--rounds", "2"]  # the last --rounds wins
    proc = subprocess.run(edgenas_cmd(*args), capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="package")
def bundles_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bundles")


@pytest.fixture(scope="package")
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
