"""A target file outside ``targets/`` is resolved once and then passed on as an object: build,
compile, package, verify and measure all work with it (before, the bundling step and the farm
looked the target up again by name, so such a build failed after all its work was done)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from buildkit import edgenas_cmd, run_cli, tiny_build_args

REPO = Path(__file__).resolve().parents[2]
NAME = "my-x86"   # in no targets/ directory


@pytest.fixture(scope="module")
def outside_target(tmp_path_factory) -> Path:
    text = (REPO / "targets" / "x86-avx2.toml").read_text().replace('name = "x86-avx2"', f'name = "{NAME}"')
    path = tmp_path_factory.mktemp("elsewhere") / f"{NAME}.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def outside_run(tmp_path_factory, tiny_recipe, outside_target) -> Path:
    out = tmp_path_factory.mktemp("outside") / "run"
    args = tiny_build_args(out, tiny_recipe, search_epochs=2)
    args[args.index("--target") + 1] = str(outside_target)
    proc = subprocess.run(edgenas_cmd(*args), capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_build_with_a_target_file_outside_targets_bundles_it(outside_run):
    assert (outside_run / f"model_{NAME}.so").is_file()
    assert (outside_run / NAME / "manifest.json").is_file()   # the build's own bundle step


def test_package_verify_and_measure_with_a_target_file_outside_targets(outside_run, outside_target, tmp_path):
    proc = run_cli("package", str(outside_run), "--target", str(outside_target), "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = run_cli("verify", str(tmp_path / NAME))
    assert proc.returncode == 0 and "run (local)" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-2000:]
    for extra in ([], ["--target", str(outside_target)]):
        proc = run_cli("measure", str(outside_run), "--repeat", "5", *extra)
        assert proc.returncode == 0 and "median" in proc.stdout, proc.stderr[-2000:]


def test_compile_with_a_target_file_outside_targets(outside_run, outside_target, tmp_path):
    lib = tmp_path / "byo.so"
    proc = run_cli("compile", str(outside_run / "model_int8.onnx"), "--target", str(outside_target), "--out", str(lib))
    assert proc.returncode == 0 and lib.is_file(), proc.stderr[-3000:]
    assert NAME in proc.stdout
