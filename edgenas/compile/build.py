"""Phases 4–6: schedule (tuning DB + fallback), lower, ``tvm.compile`` and ``export_library``.

Everything target-specific comes from ``pipeline.backend(spec)`` (the CUDA fatbin environment
among it: ``cuda_env.py``).
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

from . import pipeline


def build(fused_mod, spec, out_path: str | os.PathLike, database=None) -> tuple[Path, list[str]]:
    """Compile the fused module for ``spec`` (with ``database`` applied if given) and export it.

    Returns the library path and the kernels whose tuning record could not be applied.

    The library is exported into a temporary directory beside ``out_path`` and renamed into place,
    so an interrupted build never leaves a truncated ``.so`` where a good one is expected.
    """
    import tvm

    # A module of its own: the default-schedule rules mark the caller's kernels scheduled in place,
    # and a second build of the same module (the tuned library's check against the defaults,
    # docs/tuning.md) would then apply no database record at all.
    fused_mod = tvm.IRModule(dict(fused_mod.functions), attrs=fused_mod.attrs)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    from . import packed_dot

    tgt = spec.tvm()
    skipped: list[str] = []
    kernel = packed_dot.kernel_for(spec)
    if kernel is not None:
        packed_dot.register()  # the default schedules tensorize with them
    with pipeline.build_env(spec), tgt, tvm.transform.PassContext(opt_level=3):
        ex = tvm.compile(fused_mod, target=tgt, relax_pipeline=pipeline.schedule_and_lower(spec, database, skipped, kernel))
    from .. import fsio

    try:
        tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=out_path.parent))
    except OSError as e:
        raise (fsio.no_space_error(out_path) if e.errno == errno.ENOSPC else e) from None
    try:
        lib = tmp / out_path.name
        try:
            ex.export_library(str(lib), fcompile=pipeline.fcompile(spec))
        except Exception as e:  # the compiler's message holds the cause; TVM's first line is "Compilation error:"
            cause = next((ln for ln in str(e).splitlines() if "No space left" in ln or "Disk quota" in ln), None)
            if cause is None and not (isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)):
                raise
            raise fsio.no_space_error(out_path, "No space left on device" if cause is None else
                                      cause.rsplit(": ", 1)[-1]) from None
        _check_complete_elf(lib, out_path)
        os.replace(lib, out_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_path, skipped


def _check_complete_elf(lib: Path, out_path: Path) -> None:
    """The linked library holds all the bytes its ELF header promises. Measured here: GNU ld on a
    full tmpfs can exit 0 with the file cut at the quota, which would otherwise be installed."""
    import struct

    from .. import fsio

    size = lib.stat().st_size
    head = lib.read_bytes()[:64]
    if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit ELF only (x86-64, aarch64)
        return
    shoff, = struct.unpack_from("<Q", head, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", head, 0x3A)
    if shoff + shentsize * shnum > size:
        raise fsio.no_space_error(out_path, f"the linker wrote only {size} of {shoff + shentsize * shnum} bytes "
                                            f"(a full disk?)")

