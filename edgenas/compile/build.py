"""Phases 4–6: schedule (tuning DB + fallback), lower, ``tvm.compile`` and ``export_library``.

Everything target-specific comes from ``pipeline.backend(spec)`` (the CUDA fatbin environment
among it: ``cuda_env.py``).
"""

from __future__ import annotations

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

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    from . import packed_dot

    tgt = spec.tvm()
    skipped: list[str] = []
    kernel = packed_dot.kernel_for(spec)
    if kernel is not None:
        packed_dot.register()  # the default schedules tensorize with them
    with pipeline.build_env(spec), tgt, tvm.transform.PassContext(opt_level=3):
        ex = tvm.compile(fused_mod, target=tgt,
                         relax_pipeline=pipeline.schedule_and_lower(spec, database, skipped, kernel))
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=out_path.parent))
    try:
        lib = tmp / out_path.name
        ex.export_library(str(lib), fcompile=pipeline.fcompile(spec))
        os.replace(lib, out_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_path, skipped
