"""Helpers shared by test modules: how to run the CLI and the smallest complete build.

A uniquely named module, not ``conftest``: several conftest.py files exist, and ``from conftest
import`` resolves to whichever one was imported first in a full run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TINY_SEARCH_EPOCHS = 8


def tiny_build_args(out: Path, recipe: Path, search_epochs: int = TINY_SEARCH_EPOCHS) -> list[str]:
    """CLI flags of the smallest build that still runs every stage."""
    return ["build", "--target", "x86-avx2", "--out", str(out), "--rounds", "1", "--image-size", "8",
            "--search-epochs", str(search_epochs), "--epochs", "3", "--samples", "1", "--heldout", "3", "--recipe", str(recipe)]


def edgenas_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgenas.cli", *args]


def run_cli(*args: str, timeout: int = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    """``edgenas ARGS`` through ``edgenas.cli.main``, the console script's entry point, with wide
    output (rich wraps tables at 80 columns when not on a terminal); ``env`` replaces the environment."""
    cmd = [sys.executable, "-c", "from edgenas.cli import main; main()", *args]
    env = {**(env or os.environ), "COLUMNS": "250"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def _one_thread():
    """Single-threaded torch: intra-op threads on a shared, loaded CPU are several times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _recipe():
    from edgenas.quantize.recipe import get_recipe

    return get_recipe("int8-per-channel")


def package_fixtures():
    """``(one_thread, recipe)`` fixtures for a test package's conftest (space and search share them)."""
    import pytest

    return (pytest.fixture(autouse=True, scope="package", name="_one_thread")(_one_thread),
            pytest.fixture(scope="package", name="recipe")(_recipe))


def tiny_qdq_model(directory: Path, shape=(1, 3, 16, 16)) -> Path:
    """A bring-your-own INT8 model as users make them: a tiny float CNN (conv-relu-pool-linear)
    quantized by onnxruntime's ``quantize_static`` into QDQ ONNX."""
    import warnings

    import torch
    from torch import nn

    from edgenas.quantize.ort_static import quantize_static_onnx

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(shape[1], 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(*shape),), str(directory / "float.onnx"), opset_version=17, dynamo=False,
                          input_names=["input"], output_names=["logits"])
    return quantize_static_onnx(directory / "float.onnx", directory / "qdq.onnx", shape)
