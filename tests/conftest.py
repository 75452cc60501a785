"""Shared fixtures. Tests never write into the committed tuning_logs/: EDGENAS_TUNING_LOGS points at
one temp dir per session (so the op table is profiled once and shared by every build test)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from buildkit import edgenas_cmd, tiny_build_args  # noqa: F401  (re-exported for fixtures below)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def tuning_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tuning_logs")
    os.environ["EDGENAS_TUNING_LOGS"] = str(root)
    return root


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
    import subprocess

    out = tmp_path_factory.mktemp("runs") / "tiny"
    proc = subprocess.run(edgenas_cmd(*tiny_build_args(out, tiny_recipe)), capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc
