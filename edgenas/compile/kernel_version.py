"""The version of edgenas' integer kernels and default schedules, stamped into what was measured with them.

Why: the tuning store (``tuning_logs/<target>/``) keeps latencies measured on this host for every
later run: the op table the search optimizes, the whole-network points ``--reuse-latency`` refits
on, and the tuning database, whose first record per task is the measured default schedule
(``tune._measure_defaults``). Once the kernels change, those numbers describe kernels nobody
builds any more: an old op table steers the search with old latencies, and an old default record
can hide a faster new default (the database picks its best record per task). So each of them
carries the version it was measured with, and one of another version is set aside, never used
(``TuningStore``, ``tuning_db.set_aside_stale``; docs/tuning.md, "Kernel versions").

**Bump** ``KERNEL_VERSION`` by hand in the commit that changes what an integer kernel computes or
how fast it runs: ``packed_dot.py`` (intrinsics, packing, which weights take the narrow form),
``depthwise.py``, ``default_schedule.py`` (any default schedule), the Q/DQ rewrite's choice of
kernel per op (``qdq_rewrite.py``), or a TVM upgrade that changes their code. Not for changes that
leave every built library the same (refactoring, docs, the search, the CLI).
"""

from __future__ import annotations

KERNEL_VERSION = 2


def schedule_stamp() -> str:
    """What a tuning database's records depend on beyond their own workload: ``v<KERNEL_VERSION>``.

    A record applies only to the workload (the kernel's TIR) it was tuned for, and the packed
    layout of a target's dot product and the weight dtype of the narrow form are part of that
    TIR, so a target's ``[int8]`` fields need not be stamped: changing them makes new workloads,
    which get their own default record, and leaves the records of the old ones correct. What
    a record cannot show is that the default schedule of its *same* workload changed."""
    return f"v{KERNEL_VERSION}"


def latency_stamp(target) -> str:
    """What a latency measured for ``target`` (a ``TargetSpec``) depends on: the kernel version,
    its ``[int8] dot_product`` (which kernel) and ``weight_bits`` (the width every op is built
    at: a ``w8`` op of an x86-avx2 table is timed at 7 bits). E.g. ``v1-avx2-w7``; also a file
    name part (``op_latency.stale-v1-avx2-w7.json``).

    The TVM target itself (``mcpu``, thread count) is not stamped: it is what names the target,
    and the store is per host."""
    return f"{schedule_stamp()}-{target.int8_dot}-w{target.int8_weight_bits}"
