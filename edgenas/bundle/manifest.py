"""The bundle manifest and the two ways a bundle's bytes are sealed.

A bundle is what a user ships to a device, so it must say everything needed to trust it without
the run directory that produced it: which target and software built it, how accurate and how fast
it is (and how and where that was measured), what the search and tuning cost, and the sha256 of
every file. ``manifest.json`` lists every file but itself; ``SHA256SUMS`` (``sha256sum -c``
format, so it checks without edgenas) covers every file *including* ``manifest.json``, so a flipped
byte anywhere in the bundle is caught and the failing file is named.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..build.rundir import MANIFEST   # a bundle names its manifest as a run directory does
from ..compile import tuning_db
from ..fsio import sha256_file
from ..records import record
from ..versions import software_versions

BUNDLE_SCHEMA_VERSION = 1
SUMS = "SHA256SUMS"
SIGNATURE = "SHA256SUMS.sig"   # bundle/signing.py: the ed25519 signature of SUMS
SEALS = (MANIFEST, SUMS, SIGNATURE)
TUNING_LOCK = f"tuning/{tuning_db.LOCK}"


@record("bundle_manifest")
@dataclass(frozen=True)
class BundleManifest:
    schema_version: int
    target: str                       # target name (targets/<name>.toml)
    target_dict: dict                 # the TVM target dict the library was built for
    target_host: dict | None
    target_arch: str                  # host CPU architecture of the device (x86_64, aarch64)
    arch: str                         # the architecture string (also in arch.json)
    library: str                      # file name of the compiled library
    data: str                         # data set the accuracy was measured on
    accuracy: dict                    # fp32 / int8 on the test split, with what ran them
    latency: dict | None              # LatencyStats as dict, None when not measured
    latency_how: str                  # how and where, or why it was not measured
    compile: dict                     # int8 ops, float fallbacks, seconds, whether it was recompiled
    tuning: dict                      # the slice of the tuning DB shipped, trials, tuning seconds
    search_cost_s: float
    stage_seconds: dict
    verification: dict                # stored inputs / outputs, their reference and the tolerance
    source: dict                      # the run directory, its manifest hash, the recipe source
    files: dict[str, str]             # every file but the seals -> sha256
    software: dict[str, str] = field(default_factory=software_versions)
    created_at: float = 0.0


def bundle_files(root: Path) -> list[str]:
    """Every regular file under ``root`` (relative POSIX paths, sorted), seals excluded.

    ``tuning/database.lock`` is not part of a bundle either: whoever compiles with ``tuning/`` as
    the tuning dir takes that (empty) lock file there, which must not make the bundle "changed".
    """
    out = []
    for dirpath, _, names in os.walk(root):
        for n in names:
            rel = (Path(dirpath) / n).relative_to(root).as_posix()
            if rel not in SEALS and rel != TUNING_LOCK:
                out.append(rel)
    return sorted(out)


def hash_tree(root: Path) -> dict[str, str]:
    return {name: sha256_file(root / name) for name in bundle_files(root)}


def sums_text(root: Path) -> str:
    """``SHA256SUMS`` content for every file in ``root`` including ``manifest.json``."""
    names = sorted(bundle_files(root) + [MANIFEST])
    return "".join(f"{sha256_file(root / n)}  {n}\n" for n in names)


def parse_sums(text: str) -> dict[str, str]:
    """``SHA256SUMS`` -> {name: digest}; raises ``ValueError`` naming the first bad line."""
    out = {}
    for i, line in enumerate(text.splitlines(), 1):
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest) or not name:
            raise ValueError(f"line {i} is not '<sha256>  <file>'")
        out[name] = digest
    return out
