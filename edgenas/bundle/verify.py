"""``edgenas verify BUNDLE``: is this bundle exactly what was packaged, and does its library work?

Order matters (docs/security.md), and the first failure stops everything after it:

1. the layout: regular files and folders only, no symlink (not even one pointing inside), no
   device or FIFO;
2. the ed25519 signature of ``SHA256SUMS`` (``bundle/signing.py``) under a trusted key. Without
   one the report says that integrity, not origin, was checked;
3. every byte (``SHA256SUMS`` covers ``manifest.json``; the manifest covers every other file, and
   a file it does not list is a failure too: a bundle is sealed), with every listed name a plain
   relative path inside the bundle.

Only then is the library loaded, because ``dlopen`` of a changed ``.so`` runs whatever its
constructors now say. Then the library runs where this host can reach
the bundle's device (``edgenas.measure.runners``, chosen from the manifest's target data):

* x86-64 CPU targets run here on the stored inputs, when this CPU has the target's instructions
  (a ``cascadelake`` library on an AVX2 host would die of SIGILL, so it is skipped with the reason);
* aarch64 CPU targets run under qemu-user (``edgenas.measure.aarch64_check``; ``scripts/setup_cross``);
* CUDA targets: the library must hold a real ``sm_XX`` fatbin; on a host with a CUDA GPU it runs
  through the runtime-only runner (``edgenas.measure.cuda_run``), elsewhere the check says
  "compiled, not executed".

Outputs are compared with the stored onnxruntime int8 outputs within the manifest's tolerance
(``bundle/sources.py:tolerance``: rounding of one int8 step passes, a broken library does not)
and must agree on the top-1 class of every input that is not a near-tie.
A check is ``ok``, ``fail``, ``skip`` (could not run here; ``strict`` makes it a failure) or ``info``.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import records
from . import signing
from ..errors import EdgenasError
from ..fsio import sha256_file
from .manifest import BUNDLE_SCHEMA_VERSION, MANIFEST, SUMS, BundleManifest, bundle_files, parse_sums

ELF_MACHINE = {"x86_64": 62, "aarch64": 183}
FATBIN_MAGIC = b"\x50\xed\x55\xba"  # 0xBA55ED50 little-endian: the CUDA fatbin container header


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | fail | skip | info
    detail: str


@dataclass
class Verification:
    bundle: Path
    manifest: BundleManifest | None = None
    checks: list[Check] = field(default_factory=list)

    def add(self, name: str, status: str, detail: str) -> None:
        self.checks.append(Check(name, status, detail))

    def failures(self, strict: bool = False) -> list[Check]:
        bad = {"fail", "skip"} if strict else {"fail"}
        return [c for c in self.checks if c.status in bad]


def verify_bundle(bundle: str | os.PathLike, trusted_keys: list | None = None) -> Verification:
    """Verify ``bundle``; ``trusted_keys`` (Ed25519 public keys) default to the keys this user
    signs with (``signing.default_trusted``)."""
    v = Verification(Path(bundle))
    if v.bundle.is_symlink() or not v.bundle.is_dir():
        v.add("bundle", "fail", f"{v.bundle}: " + ("a symlink, not a bundle folder" if v.bundle.is_symlink()
                                                   else "no such directory"))
        return v
    if not (v.bundle / SUMS).exists():
        v.add("bundle", "fail", f"{v.bundle}: no {SUMS}, so not a sealed bundle "
                                "(bundles are written by `edgenas package RUN_DIR --target NAME`)")
        return v
    if not _check_layout(v) or not _check_signature(v, signing.default_trusted() if trusted_keys is None else trusted_keys):
        v.add("library", "skip", "not loaded: the bundle cannot be trusted (see above)")
        return v
    if not _check_hashes(v):
        v.add("library", "skip", "not loaded: the bundle's bytes differ from what was packaged")
        return v
    m = v.manifest
    lib = v.bundle / m.library
    if _check_elf(v, lib, m):
        x = np.load(v.bundle / m.verification["inputs"])
        expected = np.load(v.bundle / m.verification["outputs"])
        _check_reference(v, x, expected)
        _run_library(v, lib, m, x, expected)
    return v


def verified_library(bundle: str | os.PathLike, trusted_keys: list | None = None) -> tuple[BundleManifest, Path]:
    """The bundle's manifest and library, after ``verify_bundle`` passed: the one way to take a
    library out of a bundle to measure it (``edgenas bench BUNDLE``), since sending it to a
    device loads it there. Raises ``UsageError`` naming the bundle and the first failed check."""
    from ..errors import UsageError

    v = verify_bundle(bundle, trusted_keys)
    bad = v.failures()
    if bad or v.manifest is None:
        why = f"{bad[0].name}: {bad[0].detail}" if bad else "no manifest"
        raise UsageError(f"{v.bundle}: not benched, the bundle does not verify ({why})")
    return v.manifest, v.bundle / v.manifest.library


def is_bundle(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder ``edgenas package`` sealed (it has ``SHA256SUMS``)."""
    return (Path(path) / SUMS).is_file()


def _check_layout(v: Verification) -> bool:
    """Regular files and folders only: a symlink could make a hash check read one file and
    ``dlopen`` another, or point outside the bundle; a FIFO or device could hang the reader."""
    import stat

    bad = []
    for dirpath, dirs, files in os.walk(v.bundle, followlinks=False):
        for name in dirs + files:
            p = Path(dirpath) / name
            mode = p.lstat().st_mode
            rel = p.relative_to(v.bundle).as_posix()
            if stat.S_ISLNK(mode):
                bad.append(f"{rel} is a symlink (to {os.readlink(p)})")
            elif not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                bad.append(f"{rel} is not a regular file")
    for why in bad:
        v.add("layout", "fail", f"{why}: refused, a bundle holds regular files only")
    if not bad:
        v.add("layout", "ok", "regular files and folders only")
    return not bad


def _check_signature(v: Verification, trusted: list) -> bool:
    res = signing.check(v.bundle, SUMS, trusted)
    if res.trusted:
        v.add("signature", "ok", res.detail)
        return True
    if trusted or not res.valid and (v.bundle / signing.SIGNATURE).exists():
        v.add("signature", "fail", res.detail)
        return False
    v.add("signature", "skip", f"{res.detail}; integrity checked, not origin: the files match the bundle's own "
                               f"hashes, which anyone who can change the files can rewrite. Pass --trusted-key PUB "
                               f"(the packager's public key) to check who packaged it")
    return True


def _safe_names(v: Verification, source: str, names) -> bool:
    """Every name a plain relative path that stays inside the bundle."""
    bad = [n for n in names if not n or os.path.isabs(n) or n.startswith("\\")
           or any(part in ("..", "") for part in n.split("/"))
           or not (v.bundle / n).resolve().is_relative_to(v.bundle.resolve())]
    for n in bad:
        v.add("layout", "fail", f"{source} lists {n!r}: refused, not a relative path inside the bundle")
    return not bad


def _check_hashes(v: Verification) -> bool:
    root = v.bundle
    try:
        sums = parse_sums((root / SUMS).read_text())
    except (OSError, ValueError) as e:
        v.add(f"sha256 {SUMS}", "fail", f"{SUMS}: unreadable ({e})")
        return False
    if not _safe_names(v, SUMS, sums):
        return False
    if MANIFEST not in sums:
        v.add(f"sha256 {SUMS}", "fail", f"{SUMS}: does not list {MANIFEST}")
        return False
    ok = _compare(SUMS, root, {MANIFEST: sums.pop(MANIFEST)}, v)
    try:
        v.manifest = records.load(root / MANIFEST, BundleManifest)
    except EdgenasError as e:
        v.add("manifest", "fail", f"{MANIFEST}: {e}")
        return False
    if v.manifest.schema_version != BUNDLE_SCHEMA_VERSION:
        v.add("manifest", "fail", f"{MANIFEST}: schema {v.manifest.schema_version}, this edgenas reads {BUNDLE_SCHEMA_VERSION}")
        return False
    m = v.manifest
    if not _safe_names(v, MANIFEST, m.files):
        return False
    used = [m.library, str(m.verification.get("inputs")), str(m.verification.get("outputs"))]
    unlisted = [n for n in used if n not in m.files]
    if unlisted:  # a loaded or read file must be one whose hash is checked
        v.add("manifest", "fail", f"{MANIFEST}: names {', '.join(map(repr, unlisted))} but does not hash it")
        return False
    v.add("manifest", "ok", f"schema {v.manifest.schema_version}, target {v.manifest.target}, {len(v.manifest.files)} files")
    ok &= _compare(MANIFEST, root, v.manifest.files, v)
    if sums != v.manifest.files:
        odd = sorted(n for n in set(sums) | set(v.manifest.files) if sums.get(n) != v.manifest.files.get(n))
        v.add(f"sha256 {SUMS}", "fail", f"{SUMS}: disagrees with {MANIFEST} on {', '.join(odd)}")
        ok = False
    extra = sorted(set(bundle_files(root)) - set(v.manifest.files))
    for name in extra:
        v.add(f"sha256 {name}", "fail", f"{name}: not listed in {MANIFEST} (bundles are sealed)")
    return ok and not extra


def _compare(source: str, root: Path, expected: dict[str, str], v: Verification) -> bool:
    ok = True
    for name, digest in sorted(expected.items()):
        path = root / name
        if not path.is_file():
            v.add(f"sha256 {name}", "fail", f"{name}: missing (listed in {source})")
            ok = False
        elif sha256_file(path) != digest:
            why = f"{name} or {SUMS} changed" if name == MANIFEST else "the file changed"
            v.add(f"sha256 {name}", "fail", f"{name}: sha256 differs from {source} ({why})")
            ok = False
        else:
            v.add(f"sha256 {name}", "ok", digest[:16] + "…")
    return ok


def _check_elf(v: Verification, lib: Path, m: BundleManifest) -> bool:
    head = lib.read_bytes()[:20]
    if head[:4] != b"\x7fELF":
        v.add("library", "fail", f"{m.library}: not an ELF shared library")
        return False
    machine = struct.unpack_from("<H", head, 18)[0]
    want = ELF_MACHINE.get(m.target_arch)
    if machine != want:
        v.add("library", "fail", f"{m.library}: ELF machine {machine}, expected {want} for {m.target_arch}")
        return False
    v.add("library", "ok", f"{m.library}: ELF {m.target_arch}, {lib.stat().st_size / 1024:.0f} KiB")
    return True


def _check_reference(v: Verification, x: np.ndarray, expected: np.ndarray) -> None:
    """The stored outputs reproduce from the bundle's own int8 ONNX on this machine."""
    from ..quantize.export import run_ort

    err = float(np.abs(run_ort(v.bundle / "model_int8.onnx", x, optimize=False) - expected).max())
    atol = v.manifest.verification["atol"]
    v.add("onnx int8 reference", "ok" if err <= atol else "fail",
          f"onnxruntime on model_int8.onnx vs stored outputs: max |err| {err:.3g} (atol {atol:.3g})")


def _compare_outputs(v: Verification, name: str, out: np.ndarray, expected: np.ndarray) -> None:
    """Within atol everywhere, and the same top-1 class wherever the reference is not a near-tie
    (errors below atol can only flip classes whose top-2 margin is under 2*atol)."""
    atol = v.manifest.verification["atol"]
    out = out.reshape(expected.shape)
    err = float(np.abs(out - expected).max())
    top2 = np.sort(expected, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 2 * atol
    flips = int(((out.argmax(1) != expected.argmax(1)) & clear).sum())
    agree = float((out.argmax(1) == expected.argmax(1)).mean())
    ok = err <= atol and flips == 0
    v.add(name, "ok" if ok else "fail", f"{len(expected)} stored inputs: max |err| {err:.3g} (atol {atol:.3g}), "
                                       f"top-1 agreement {agree * 100:.0f} %" + (f", {flips} clear flips" if flips else ""))


def _run_library(v: Verification, lib: Path, m: BundleManifest, x: np.ndarray, expected: np.ndarray) -> None:
    """Run the library the way this host reaches the bundle's device (``measure.runners``: here,
    under qemu, or not at all), from the target data the manifest recorded."""
    from ..measure.runners import device_runner

    runner = device_runner(m.target, m.target_dict, m.target_arch)
    why = runner.unavailable()
    if m.target_dict.get("kind") == "cuda":   # the machine code itself, and on a GPU host the numerics
        from ..measure.cuda_run import gpu_present, run_cuda_library

        _check_fatbin(v, lib, m)
        if gpu_present():
            out, lat = run_cuda_library(lib, x)
            _compare_outputs(v, "run (cuda)", out, expected)
            v.add("latency (cuda)", "info", f"median {lat['median_ms']:.4f} ms (p10 {lat['p10_ms']:.4f}, p90 "
                                            f"{lat['p90_ms']:.4f}, n={lat['n']}) on cuda:0, runtime-only runner")
        else:
            v.add("run (cuda)", "info", f"compiled, not executed: no CUDA GPU on this host ({why}); "
                                        "numerics are checked on the device")
    elif why:
        v.add(f"run ({runner.where})", "skip", why)
    else:
        _compare_outputs(v, f"run ({runner.where})", runner.run(lib, x), expected)


def _fatbin_archs(data: bytes, start: int) -> set[int]:
    """SM numbers in the fatbin at ``start``: header {magic u32, version u16, header size u16,
    payload size u64}, then entries {kind u16, version u16, header size u32, payload size u64, …,
    arch u32 at byte 28}."""
    _, _, hsize, size = struct.unpack_from("<IHHQ", data, start)
    pos, end, archs = start + hsize, start + hsize + size, set()
    while pos + 32 <= min(end, len(data)):
        _, _, ehsize, esize = struct.unpack_from("<HHIQ", data, pos)
        archs.add(struct.unpack_from("<I", data, pos + 28)[0])
        pos += max(ehsize + esize, 1)
    return archs


def _check_fatbin(v: Verification, lib: Path, m: BundleManifest) -> None:
    data = lib.read_bytes()
    want = int(str(m.target_dict.get("arch", "sm_0")).removeprefix("sm_"))
    start = data.find(FATBIN_MAGIC)
    archs = _fatbin_archs(data, start) if start >= 0 else set()
    if want not in archs:
        v.add("cuda fatbin", "fail", f"{m.library}: no sm_{want} fatbin (found {sorted(archs) or 'none'})")
    elif b"__global__" in data:
        v.add("cuda fatbin", "fail", f"{m.library}: carries CUDA source besides the fatbin (would JIT on the device)")
    else:
        v.add("cuda fatbin", "ok", f"{m.library}: sm_{want} machine code, no CUDA source")
