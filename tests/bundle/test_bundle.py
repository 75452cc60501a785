"""Bundles as a user meets them: package a finished run, verify it, tamper with it, re-package it."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from edgenas import records
from edgenas.bundle import signing
from edgenas.bundle.manifest import BundleManifest, parse_sums
from edgenas.fsio import sha256_file
from edgenas.measure import aarch64_check

from buildkit import run_cli

EXPECTED_FILES = {"model_x86-avx2.so", "model_fp32.onnx", "model_int8.onnx", "arch.json", "recipe.toml",
                  "latency.json", "verify/inputs.npy", "verify/expected.npy",
                  "tuning/database_workload.json", "tuning/database_tuning_record.json"}


def _one_line_error(proc) -> str:
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_bundle_holds_everything_and_the_manifest_says_what_it_is(x86_bundle):
    m = records.load(x86_bundle / "manifest.json", BundleManifest)
    assert set(m.files) == EXPECTED_FILES
    for name, digest in m.files.items():
        assert sha256_file(x86_bundle / name) == digest, name
    sums = parse_sums((x86_bundle / "SHA256SUMS").read_text())
    assert sums["manifest.json"] == sha256_file(x86_bundle / "manifest.json") and len(sums) == len(m.files) + 1
    assert m.schema_version == 1 and m.target == "x86-avx2" and m.target_dict["kind"] == "llvm"
    assert m.software["apache-tvm"].startswith("0.27") and "onnxruntime" in m.software
    assert m.data == "digits" and m.accuracy["data"] == "digits" and m.accuracy["split"] == "test"
    assert 0 < m.accuracy["int8_onnx"] <= 1 and 0 < m.accuracy["fp32"] <= 1 and m.accuracy["int8_library"] is not None
    assert m.latency["median_ms"] > 0 and m.latency["n"] >= 10 and "local:" in m.latency_how
    assert m.search_cost_s > 0 and m.compile["int8_ops"] and "records" in m.tuning
    x, y = np.load(x86_bundle / "verify/inputs.npy"), np.load(x86_bundle / "verify/expected.npy")
    assert x.shape[0] == y.shape[0] == m.verification["n"] and m.verification["atol"] > 0


def test_verify_runs_the_library_on_stored_inputs(x86_bundle):
    proc = run_cli("verify", "--strict", str(x86_bundle))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "run (local)" in proc.stdout and "FAIL" not in proc.stdout and "top-1 agreement" in proc.stdout


@pytest.mark.parametrize("name", ["model_x86-avx2.so", "model_int8.onnx", "verify/expected.npy", "manifest.json", "SHA256SUMS"])
def test_one_changed_byte_fails_naming_the_file(bundle_copy, name):
    path = bundle_copy / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    proc = run_cli("verify", str(bundle_copy))
    assert proc.returncode == 1, proc.stdout
    assert name in _one_line_error(proc)
    if name.endswith(".so"):
        assert "not loaded" in proc.stdout  # a changed library is never dlopen'ed


def test_wrong_numbers_fail_even_in_a_resealed_bundle(bundle_copy):
    """Hashes prove integrity, not correctness: outputs that are off fail the numeric checks."""
    import dataclasses

    from edgenas.bundle.manifest import hash_tree, sums_text

    path = bundle_copy / "verify/expected.npy"
    y = np.load(path)
    np.save(path, y + 0.1 * np.ptp(y) * np.random.default_rng(0).standard_normal(y.shape).astype(y.dtype))
    m = records.load(bundle_copy / "manifest.json", BundleManifest)
    records.save(bundle_copy / "manifest.json", dataclasses.replace(m, files=hash_tree(bundle_copy)))
    (bundle_copy / "SHA256SUMS").write_text(sums_text(bundle_copy))
    signing.sign(bundle_copy / "SHA256SUMS", signing.own_key())   # as a buggy packager would: signed
    proc = run_cli("verify", str(bundle_copy))
    assert proc.returncode == 1 and "max |err|" in _one_line_error(proc)
    assert "run (local)" in proc.stdout and "sha256 differs" not in proc.stdout


def _reseal(bundle):
    """What an attacker who can write the bundle can do: rehash the manifest and SHA256SUMS."""
    import dataclasses

    from edgenas.bundle.manifest import hash_tree, sums_text

    m = records.load(bundle / "manifest.json", BundleManifest)
    records.save(bundle / "manifest.json", dataclasses.replace(m, files=hash_tree(bundle)))
    (bundle / "SHA256SUMS").write_text(sums_text(bundle))


def _evil_library(tmp_path, marker):
    """A shared library whose constructor writes ``marker``: dlopen alone runs it."""
    import subprocess

    src = tmp_path / "evil.c"
    src.write_text('#include <stdio.h>\n__attribute__((constructor)) static void run(void) {\n'
                   f'  FILE *f = fopen("{marker}", "w"); if (f) {{ fputs("ran", f); fclose(f); }}\n}}\n')
    lib = tmp_path / "evil.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    return lib


def _other_public_key(tmp_path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = tmp_path / "other.pub.pem"
    path.write_bytes(signing.public_pem(Ed25519PrivateKey.generate().public_key()))
    return path


def test_a_signed_bundle_verifies_with_the_right_key_only(bundle_copy, tmp_path, config_home):
    own = config_home / "edgenas" / signing.PUB_NAME
    assert (bundle_copy / signing.SIGNATURE).is_file()
    good = run_cli("verify", "--strict", "--trusted-key", str(own), str(bundle_copy))
    assert good.returncode == 0 and "signature by trusted key" in good.stdout, good.stdout + good.stderr
    wrong = run_cli("verify", "--trusted-key", str(_other_public_key(tmp_path)), str(bundle_copy))
    assert wrong.returncode == 1 and "not signed by a trusted key" in _one_line_error(wrong)
    assert "not loaded" in wrong.stdout and "run (local)" not in wrong.stdout


def test_a_tampered_library_is_refused_before_it_is_loaded(bundle_copy, tmp_path, config_home):
    marker = tmp_path / "constructor-ran"
    shutil.copyfile(_evil_library(tmp_path, marker), bundle_copy / "model_x86-avx2.so")
    _reseal(bundle_copy)
    own = config_home / "edgenas" / signing.PUB_NAME
    proc = run_cli("verify", "--trusted-key", str(own), str(bundle_copy))
    assert proc.returncode == 1 and "SHA256SUMS" in _one_line_error(proc) and "not loaded" in proc.stdout
    # without any trusted key too: the signature no longer matches the SHA256SUMS it signed
    import os

    bare = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "no-keys")}
    proc = run_cli("verify", str(bundle_copy), env=bare)
    assert proc.returncode == 1 and "changed after signing" in _one_line_error(proc)
    assert not marker.exists(), "verify loaded the tampered library"


def test_a_symlinked_library_is_refused(bundle_copy, tmp_path):
    outside = tmp_path / "outside.so"
    shutil.move(bundle_copy / "model_x86-avx2.so", outside)
    (bundle_copy / "model_x86-avx2.so").symlink_to(outside)    # same bytes: every hash still matches
    proc = run_cli("verify", str(bundle_copy))
    assert proc.returncode == 1 and "symlink" in _one_line_error(proc) and "not loaded" in proc.stdout


def test_without_a_trusted_key_verify_says_integrity_not_origin(bundle_copy, tmp_path):
    import os

    bare = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "no-keys")}
    proc = run_cli("verify", str(bundle_copy), env=bare)
    assert proc.returncode == 0 and "integrity checked, not origin" in proc.stdout, proc.stdout + proc.stderr
    strict = run_cli("verify", "--strict", str(bundle_copy), env=bare)
    assert strict.returncode == 1 and "not origin" in _one_line_error(strict)


def test_package_refuses_a_folder_that_is_not_a_bundle(built_run, tmp_path):
    mine = tmp_path / "out" / "x86-avx2"
    mine.mkdir(parents=True)
    (mine / "thesis.tex").write_text("keep me")
    proc = run_cli("package", str(built_run), "--target", "x86-avx2", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "not an edgenas bundle" in _one_line_error(proc)
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.tex"] and (mine / "thesis.tex").read_text() == "keep me"


def test_unlisted_or_missing_files_fail(bundle_copy):
    (bundle_copy / "extra.txt").write_text("not packaged")
    (bundle_copy / "arch.json").unlink()
    proc = run_cli("verify", str(bundle_copy))
    err = _one_line_error(proc)
    assert proc.returncode == 1 and "arch.json: missing" in err and "extra.txt" in proc.stdout


def test_package_refuses_an_unfinished_run(tmp_path):
    (tmp_path / "state.json").write_text('{"config": {}, "completed": {}}')
    proc = run_cli("package", str(tmp_path), "--target", "x86-avx2")
    assert proc.returncode == 2 and "--resume" in _one_line_error(proc)


def test_interrupted_repackage_keeps_the_old_bundle(x86_bundle, built_run, tmp_path, monkeypatch):
    import edgenas.bundle as bundle
    from edgenas.target import get_target

    out = tmp_path / "bundles"
    shutil.copytree(x86_bundle, out / "x86-avx2")
    before = (out / "x86-avx2" / "manifest.json").read_bytes()

    def interrupted(src, spec, tmp, say, n):
        (tmp / "model_fp32.onnx").write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(bundle, "_fill", interrupted)
    with pytest.raises(KeyboardInterrupt):
        bundle.package(built_run, get_target("x86-avx2"), out)
    assert (out / "x86-avx2" / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in out.iterdir() if not p.name.endswith(".lock")) == ["x86-avx2"]


def test_repackage_replaces_the_bundle(built_run, tmp_path):
    out = tmp_path / "b"
    for _ in range(2):
        proc = run_cli("package", str(built_run), "-t", "x86-avx2", "--out", str(out))
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir() if not p.name.endswith(".lock")) == ["x86-avx2"]
    assert run_cli("verify", str(out / "x86-avx2")).returncode == 0


@pytest.mark.skipif(bool(aarch64_check.missing_tools()),
                    reason=f"missing {aarch64_check.missing_tools()}: run scripts/setup_cross")
def test_rpi4_bundle_is_cross_compiled_and_checked_under_qemu(built_run, bundles_dir):
    proc = run_cli("package", str(built_run), "--target", "rpi4", "--out", str(bundles_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = records.load(bundles_dir / "rpi4" / "manifest.json", BundleManifest)
    assert m.latency is None and m.latency_how.startswith("not measured") and m.target_arch == "aarch64"
    proc = run_cli("verify", "--strict", str(bundles_dir / "rpi4"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "run (qemu-aarch64)" in proc.stdout and "top-1 agreement" in proc.stdout


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc (CUDA toolkit) to build a fatbin")
def test_cuda_bundle_holds_a_fatbin_and_says_it_cannot_run_here(built_run, bundles_dir):
    proc = run_cli("package", str(built_run), "--target", "cuda-sm80", "--out", str(bundles_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = run_cli("verify", "--strict", str(bundles_dir / "cuda-sm80"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "sm_80 machine code" in proc.stdout and "cannot execute without a GPU" in proc.stdout
    assert "compiled, not executed" in proc.stdout   # this host has no GPU (a GPU host runs it: cuda_run)


@pytest.mark.slow
def test_tuning_slice_holds_this_models_records_and_reproduces_the_tuned_build(built_run, tmp_path, monkeypatch):
    """Tune a few trials into a private tuning root, package, and compile again from the slice alone."""
    from edgenas.bundle import package
    from edgenas.compile import compile_onnx
    from edgenas.target import get_target

    spec = get_target("x86-avx2")
    monkeypatch.setenv("EDGENAS_TUNING_LOGS", str(tmp_path / "tl"))
    compile_onnx(built_run / "model_int8.onnx", spec, tmp_path / "tuned.so", trials=8)
    bundle = package(built_run, spec, tmp_path / "b")
    t = records.load(bundle / "manifest.json", BundleManifest).tuning
    assert 0 < t["tasks_with_record"] == t["records"] <= t["tasks"] and t["db_records"] >= t["records"]
    res = compile_onnx(bundle / "model_int8.onnx", spec, tmp_path / "again.so", tuning_dir=bundle / "tuning")
    assert res.tuned and res.db_records == t["records"]
    assert run_cli("verify", str(bundle)).returncode == 0  # compiling from tuning/ left its lock: still sealed
