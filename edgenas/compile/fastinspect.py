"""Make ``import tvm.s_tir.tensor_intrin`` fast in MetaSchedule builder workers (docs/tvm.md §5).

Why this exists: every builder worker imports ``tvm.s_tir.tensor_intrin``, whose TVMScript parser
calls ``inspect.stack()`` for each registered intrinsic. ``inspect.findsource`` then calls
``inspect.getmodule(frame, filename)``, which walks *all* of ``sys.modules`` on every call — and
``tvm_ffi`` imports torch, so that is ~2,000 modules per frame per call. Measured here: 20–45 s
for the import, which exceeds the builder's timeout, so every build fails and tuning never
progresses. Memoising ``getmodule`` by file name brings the import down to a few seconds.

``install()`` is idempotent and process-local; it is meant to be the builder's ``initializer``
(it runs in the worker, outside the per-build timeout) and is harmless in the main process.
"""

from __future__ import annotations

import inspect
import time

_MARK = "_edgenas_memoised"


def install(warm: bool = True) -> float:
    """Memoise ``inspect.getmodule`` by file name; with ``warm``, import the tensor intrinsics now.

    Returns the seconds spent warming (0 when already warm), for logging.
    """
    if not getattr(inspect.getmodule, _MARK, False):
        original = inspect.getmodule
        cache: dict[str, object] = {}

        def getmodule(obj, _filename=None):
            # Objects with ``__module__`` already take inspect's fast path; only the
            # file-name lookup (frames, code objects) scans sys.modules, so only it is cached.
            if _filename is None:
                return original(obj, _filename)
            try:
                return cache[_filename]
            except KeyError:
                mod = cache[_filename] = original(obj, _filename)
                return mod

        setattr(getmodule, _MARK, True)
        inspect.getmodule = getmodule
    if not warm:
        return 0.0
    t0 = time.perf_counter()
    import tvm.s_tir.tensor_intrin  # noqa: F401  (registers intrinsics; the slow import)

    return time.perf_counter() - t0

