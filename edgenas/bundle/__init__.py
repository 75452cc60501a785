"""Deployable bundles: ``package(run_dir, target)`` writes ``OUT/<target>/`` from a finished run.

A run directory is the record of a search; a bundle is what goes to one device. It holds the
library compiled for that target (the run's own library when the target is the run's, otherwise
the run's ``model_int8.onnx`` compiled here with the target's tuning records), the float and int8
ONNX, ``arch.json``, the quantization recipe, the slice of the tuning database the library was
built with, inputs and reference outputs for ``edgenas verify``, and the manifest
(``bundle/manifest.py``).

Everything is written into a temporary directory beside the destination and swapped in with one
``renameat2(RENAME_EXCHANGE)`` (two renames where the kernel lacks it), so a reader sees the old
bundle or the new one, never a mix, and an interrupted package leaves the old bundle intact.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

from filelock import FileLock

from .. import fsio, records
from ..build import rundir
from ..build.manifest import Manifest
from .manifest import BUNDLE_SCHEMA_VERSION, MANIFEST, SUMS, BundleManifest, hash_tree, sums_text
from .signing import SigningKey, sign, signing_key
from .sources import RunSources

VERIFY_INPUTS = "verify/inputs.npy"
VERIFY_OUTPUTS = "verify/expected.npy"
N_VERIFY = 16


def _exchange(new: Path, dst: Path) -> None:
    """Put directory ``new`` at ``dst`` atomically; the old bundle (if any) ends up at ``new``."""
    if not dst.exists():
        os.rename(new, dst)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    at_fdcwd, rename_exchange = -100, 2
    fn = getattr(libc, "renameat2", None)
    if fn is None or fn(at_fdcwd, os.fsencode(new), at_fdcwd, os.fsencode(dst), rename_exchange) != 0:
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.rename(dst, old)
        os.rename(new, dst)
        os.rename(old, new)


def _readable(root: Path) -> None:
    """Temp files and dirs are created owner-only (mkstemp / mkdtemp); a bundle is meant to be
    shared, so give it the permissions a plain ``cp`` would (umask applied)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(root, 0o777 & ~mask)
    for dirpath, dirs, files in os.walk(root):
        for d in dirs:
            os.chmod(Path(dirpath) / d, 0o777 & ~mask)
        for f in files:
            os.chmod(Path(dirpath) / f, 0o666 & ~mask)


def _refuse_foreign(dst: Path) -> None:
    """``package`` replaces ``dst`` only when it is an edgenas bundle (its manifest says so) or an
    empty folder: it never deletes what it did not make."""
    from ..errors import UsageError

    if dst.is_symlink() or (dst.exists() and not dst.is_dir()):
        raise UsageError(f"{dst} exists and is not a bundle folder; move it away or choose another --out")
    if not dst.exists() or not any(dst.iterdir()):
        return
    try:
        records.load(dst / MANIFEST, BundleManifest)
    except Exception:  # noqa: BLE001 - whatever it is, it is not ours to delete
        raise UsageError(f"{dst} exists and is not an edgenas bundle (no bundle {MANIFEST}); edgenas replaces only "
                         f"its own bundles: move it away or choose another --out") from None


def package(run_dir: str | os.PathLike, target, out_dir: str | os.PathLike | None = None,
            progress: Callable[[str], None] | None = None, n_verify: int = N_VERIFY,
            key: SigningKey | None = None) -> Path:
    """Write (or atomically replace) the bundle ``out_dir/<target name>/`` for ``target`` (a
    ``TargetSpec``), signed with ``key`` (default: ``signing.signing_key()``); returns its path."""
    say = progress or (lambda _m: None)
    spec = target
    out = Path(out_dir) if out_dir is not None else Path(run_dir)
    dst = out / spec.name
    _refuse_foreign(dst)  # first: whatever else is wrong, a user's folder is never touched
    src = RunSources(Path(run_dir))
    spec.check_host_prerequisites()
    key = key or signing_key()
    out.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out / f".{spec.name}.lock")):
        _refuse_foreign(dst)  # again under the lock: another process may have put something there
        tmp = Path(tempfile.mkdtemp(prefix=f".{spec.name}.tmp-", dir=out))
        try:
            manifest = _fill(src, spec, tmp, say, n_verify)
            records.save(tmp / MANIFEST, manifest)
            fsio.write_text(tmp / SUMS, sums_text(tmp))
            sign(tmp / SUMS, key)
            _readable(tmp)
            _exchange(tmp, dst)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    say(f"bundle written to {dst}, signed with key {key.fingerprint} ({key.source})")
    return dst


def _fill(src: RunSources, spec, tmp: Path, say: Callable[[str], None], n_verify: int) -> BundleManifest:
    from ..tuning_store import TuningStore
    from .tuning import slice_tuning_db

    m: Manifest = src.manifest
    lib_name = rundir.library_name(spec.name)
    for name in (rundir.MODEL_FP32_ONNX, rundir.MODEL_INT8_ONNX, rundir.ARCH):
        fsio.copy_file(src.run / name, tmp / name)
    recipe_name = src.copy_recipe(tmp)

    same = spec.name == m.target and (src.run / lib_name).exists()
    if same:
        fsio.copy_file(src.run / lib_name, tmp / lib_name)
        comp = {**m.compile, "compiled_by": "the build (run directory library)"}
    else:
        from ..compile import compile_onnx

        say(f"compiling model_int8.onnx for {spec.name}")
        res = compile_onnx(src.run / rundir.MODEL_INT8_ONNX, spec, tmp / lib_name, int8=True, trials=0,
                           progress=lambda msg: say(f"  {msg}"))
        comp = {**dataclasses.asdict(res), "library": lib_name, "compiled_by": "edgenas package (trials=0)"}
    comp.pop("library", None)

    say(f"slicing tuning_logs/{spec.name} for this model")
    tslice = slice_tuning_db(tmp / rundir.MODEL_INT8_ONNX, spec, TuningStore(spec).database_dir, tmp / "tuning")
    tuning = {**tslice.as_dict(), "db": f"tuning_logs/{spec.name}", "dir": "tuning/",
              "trials_in_build": src.config.get("trials", 0) if same else 0,
              "compile_seconds": round(src.seconds.get("compile", 0.0) if same else comp.get("seconds", 0.0), 2),
              "note": "compile_seconds include MetaSchedule tuning when trials_in_build > 0; the op table's "
                      "profiling (tuning the space once per target) is part of search_cost_s"}

    say(f"storing {n_verify} held-out inputs and the onnxruntime int8 outputs")
    verification = src.write_verification(tmp / VERIFY_INPUTS, tmp / VERIFY_OUTPUTS, n_verify)
    latency, how = _latency(src, spec, same, tmp, lib_name, say)

    acc = dict(m.accuracy)
    int8_lib = acc.pop("int8_tvm", None) if same else None
    acc.pop("int8_tvm", None)
    accuracy = {**acc, "data": m.data, "int8_library": int8_lib,
                "int8_library_note": "TVM library on this target, test split" if same else
                "not measured on the whole test split for this target; `edgenas verify` checks the library "
                "against onnxruntime int8 on the stored inputs"}
    return BundleManifest(
        schema_version=BUNDLE_SCHEMA_VERSION, target=spec.name, target_dict=spec.tvm_target, target_host=spec.tvm_host,
        target_arch=spec.arch, arch=m.arch, library=lib_name, data=m.data, accuracy=accuracy, latency=latency,
        latency_how=how, compile=comp, tuning=tuning, search_cost_s=m.search_cost_s, stage_seconds=m.stage_seconds,
        verification=verification,
        source={"run_dir": str(src.run.resolve()), "run_manifest_sha256": src.manifest_sha256, "recipe": recipe_name,
                "run_target": m.target},
        files=hash_tree(tmp), created_at=time.time())


def _latency(src: RunSources, spec, same: bool, tmp: Path, lib_name: str, say) -> tuple[dict | None, str]:
    """The run's measurement for its own target; a fresh local one for another local target."""
    if same and src.manifest.latency:
        fsio.copy_file(src.run / rundir.LATENCY, tmp / rundir.LATENCY)
        return dict(src.manifest.latency), src.manifest.latency_how
    if spec.measurable_locally:
        from ..measure.runners import runner_for

        say(f"measuring {lib_name} on this machine")
        stats = runner_for(spec).measure(tmp / lib_name, tuple(src.input_shape), min_samples=50).stats
        records.save(tmp / rundir.LATENCY, stats)
        return dataclasses.asdict(stats), f"TVM time_evaluator, {stats.n} repeats, {stats.where} (at package time, measurement protocol)"
    if spec.runner == "rpc":
        return None, (f"not measured: compile-only target here; a device farm serves it under RPC key {spec.rpc_key} "
                      f"(edgenas measure RUN --tracker HOST:PORT --key {spec.rpc_key})")
    return None, "not measured: compile-only target (no runner)"


__all__ = ["package", "BundleManifest", "VERIFY_INPUTS", "VERIFY_OUTPUTS"]
