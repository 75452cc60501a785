"""Compile one of the small runtime-only C++ runners (``cpp/run_vm.cc`` for aarch64 boards,
``cpp/run_cuda.cc`` for GPU hosts) into the cache, once per source and flags.

The binary is written under a temporary name and renamed into place, so a concurrent or killed
build never leaves a half-written runner that a later check would execute."""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

from ..errors import EdgenasError


def build_cached(cxx: str, source: Path, flags: list[str], cache: Path, stem: str, what: str) -> Path:
    """``cache/<stem>-<digest>``: ``source`` compiled by ``cxx`` with ``flags`` (the digest covers
    both, so a changed source or flag set builds anew); ``what`` names it in the one-line error."""
    digest = hashlib.sha256(source.read_bytes() + " ".join(flags).encode()).hexdigest()[:12]
    out = cache / f"{stem}-{digest}"
    if out.exists():
        return out
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}-", dir=cache)
    os.close(fd)
    r = subprocess.run([cxx, str(source), *flags, "-o", tmp], capture_output=True, text=True)
    if r.returncode != 0:
        Path(tmp).unlink(missing_ok=True)
        raise EdgenasError(f"building {what} failed: {r.stderr.strip().splitlines()[-1:]}")
    os.chmod(tmp, 0o755)
    os.replace(tmp, out)
    return out
