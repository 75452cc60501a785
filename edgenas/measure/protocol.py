"""The measurement protocol, the same on this CPU and on a farm device.

Why: one latency number feeds the predictor, the search's budget check and the regression gate,
and on a shared CPU a single time_evaluator call can be off by 2x. So every measurement

* warms up (page faults, thread-pool start, caches, clock ramp-up) for ``warmup_ms``;
* takes many *short* samples, in batches: each sample is ``number`` back-to-back runs lasting
  about ``sample_ms`` (0.5 ms: long enough for the timer, short enough to fit in one scheduler
  time slice). A sample is then either undisturbed or visibly preempted, and the median of many
  is the device's own latency. Long samples average the neighbours' load in instead: measured
  here under a changing load, 12 medians of 5 ms samples of one 0.27 ms network ranged over
  0.45-0.68 ms (CV 11 %), the same with one-run samples over 0.26-0.29 ms (CV 3 %);
* replaces outliers — samples more than ``outlier_mads`` scaled MADs from the median, typically
  a preemption by a neighbour — with fresh samples, within a budget, and reports how many;
* stops once the distribution-free (order-statistic) confidence interval of the median is
  narrower than ``rel_ci`` of the median, or at ``max_samples``, and says which;
* records the thread count and the pinning in force, and the software that measured;
* holds the lock of every physical core it runs on (``cores.py``), so measurements on one host
  queue per core instead of timing each other;
* with a reference library, alternates candidate and reference in short windows (A, R, A, R, …)
  and records the candidate's time as a *ratio* to the reference beside its absolute time: the
  ratio cancels the host's speed drift. Windows in which the measuring threads waited for a CPU
  or the hypervisor stole time are discarded and counted (docs/measurement.md).

TVM's default pool on x86 uses ``hardware_concurrency / 2`` threads (1 on this 2-core box) and
binds the calling thread to core 0 — even over ``taskset`` (unless ``TVM_BIND_THREADS=0``).
``threads`` sets the pool size through ``runtime.config_threadpool`` (big-core mode, bound),
which also works through RPC; a core list cannot be passed over RPC (arrays do not cross it).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..records import record
from ..versions import software_versions
from .context import Interference, LoadWatch, MachineLoad, WindowWatch, warn_if_busy
from .cores import CoreSet, core_lock, this_process_cores
from .stats import LatencyStats


@record("measure_protocol")
@dataclass(frozen=True)
class Protocol:
    warmup_ms: float = 50.0
    min_samples: int = 30
    max_samples: int = 300
    batch: int = 30
    rel_ci: float = 0.02          # stop when the CI half-width of the median is below this share of it
    confidence: float = 0.95
    sample_ms: float = 0.5        # target length of one sample (``number`` runs back to back)
    outlier_mads: float = 5.0
    max_remeasure: int = 100      # fresh samples spent on replacing outliers, at most
    threads: int = 0              # TVM pool size (can only shrink the pool), bound; 0 = the device's default
    # interleaved with a reference library (docs/measurement.md, "Ratio to a reference")
    window_samples: int = 10      # samples of the candidate, then of the reference, per window
    min_windows: int = 8          # clean windows before the ratio's interval may stop the measurement
    max_windows: int = 40
    max_preempted: float = 0.2    # a window whose threads were preempted in this share of its samples is discarded
    max_steal: float = 0.05       # ... or whose CPUs lost this share of their time to the hypervisor


@dataclass(frozen=True)
class Outcome:
    samples_ms: tuple[float, ...]
    ci_ms: tuple[float, float]
    converged: bool
    remeasured: int
    number: int = 1               # runs averaged in each sample


def median_ci(samples, confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free CI of the median: ``[x_(j), x_(n+1-j)]`` with the largest ``j`` whose
    coverage ``1 - 2 P(Bin(n, 1/2) <= j-1)`` is at least ``confidence`` ([min, max] when n is too
    small for any such ``j``). The binomial quantile comes from ``scipy.stats.binom``, which stays
    finite at any n (the exact sum of ``comb(n, j) / 2**n`` overflows a float past n ~ 1000)."""
    from scipy.stats import binom

    x = np.sort(np.asarray(samples, dtype=float))
    n, half_alpha = len(x), (1.0 - confidence) / 2
    k = int(binom.ppf(half_alpha, n, 0.5))        # smallest k with P(B <= k) >= alpha/2
    if binom.cdf(k, n, 0.5) > half_alpha:
        k -= 1                                    # largest k with P(B <= k) <= alpha/2
    j = min(max(k + 1, 1), max(n // 2, 1))
    return float(x[j - 1]), float(x[n - j])


def outlier_mask(samples, k: float) -> np.ndarray:
    """Samples more than ``k`` robust sigmas from the median. Sigma is 1.4826·MAD (~ the standard
    deviation for a normal), floored at 1 % of the median: when most samples are equal the MAD
    is 0, and a few preempted samples must still count as outliers."""
    x = np.asarray(samples, dtype=float)
    med = np.median(x)
    scale = max(1.4826 * float(np.median(np.abs(x - med))), 0.01 * abs(float(med)))
    if scale == 0:
        return np.zeros(len(x), dtype=bool)
    return np.abs(x - med) > k * scale


def run_protocol(sample: Callable[[int], list[float]], proto: Protocol, min_samples: int | None = None) -> Outcome:
    """Drive ``sample(n) -> n fresh samples (ms)`` through the protocol (warm-up done by the caller)."""
    want = max(min_samples or 0, proto.min_samples, 6)
    xs: list[float] = list(sample(want))
    remeasured = 0
    while True:
        mask = outlier_mask(xs, proto.outlier_mads)
        budget = proto.max_remeasure - remeasured
        if mask.any() and budget > 0:
            keep = [v for v, bad in zip(xs, mask) if not bad]
            n_new = min(int(mask.sum()), budget)
            xs = keep + list(sample(n_new)) + [v for v, bad in zip(xs, mask) if bad][n_new:]
            remeasured += n_new
            continue
        lo, hi = median_ci(xs, proto.confidence)
        converged = (hi - lo) / 2 <= proto.rel_ci * float(np.median(xs))
        if converged or len(xs) >= proto.max_samples:
            return Outcome(tuple(xs), (lo, hi), bool(converged), remeasured)
        xs += list(sample(min(proto.batch, proto.max_samples - len(xs))))


def configure_threads(get_function: Callable[[str], Callable], proto: Protocol) -> tuple[int, str]:
    """Apply ``proto.threads`` on the device (local or remote) and report ``(threads, pinning)``."""
    if proto.threads:
        get_function("runtime.config_threadpool")(1, int(proto.threads))
        pinning = f"tvm pool asked for {proto.threads} threads, bound to the fastest cores"
    else:
        pinning = "tvm default pool (bound to the first cores unless TVM_BIND_THREADS=0)"
    return int(get_function("runtime.NumThreads")()), pinning


def calibrate_number(vm, dev, x, proto: Protocol) -> int:
    """Warm ``vm["main"](x)`` up and return ``number``, the runs per sample of about ``sample_ms``.

    The warm-up is one repeat that TVM stretches to ``warmup_ms`` by growing its run count. Its
    mean per-run time still holds the first runs' page faults and any preemption, so it only
    seeds a calibration: five samples of about ``sample_ms`` each, whose median per-run time sets
    ``number`` (runs per sample). Every sample then lasts about ``sample_ms`` whatever the repeat
    count. A probe of five *single* runs, as before, put the timer's overhead into the estimate
    and let ``number`` change from one measurement to the next."""
    warm = vm.time_evaluator("main", dev, number=1, repeat=1, min_repeat_ms=max(1, int(proto.warmup_ms)))(x)
    seed = max(1, round(proto.sample_ms / max(float(warm.mean) * 1e3, 1e-6)))
    probe = vm.time_evaluator("main", dev, number=seed, repeat=5, min_repeat_ms=0)(x)
    per_run_ms = float(np.median(probe.results)) * 1e3
    return max(1, round(proto.sample_ms / max(per_run_ms, 1e-6)))


def sampler(vm, dev, x, number: int) -> Callable[[int], list[float]]:
    """``sample(n)``: n fresh samples (ms per run) of ``vm["main"](x)``, ``number`` runs each."""
    def sample(n: int) -> list[float]:
        timer = vm.time_evaluator("main", dev, number=number, repeat=n, min_repeat_ms=0)
        return [float(r) * 1e3 for r in timer(x).results]

    return sample


def time_vm(vm, dev, x, proto: Protocol, min_samples: int | None = None) -> Outcome:
    """Run the protocol on ``vm["main"](x)`` with TVM's time evaluator (works through RPC too)."""
    from dataclasses import replace

    number = calibrate_number(vm, dev, x, proto)
    return replace(run_protocol(sampler(vm, dev, x, number), proto, min_samples), number=number)


@record("measure_window")
@dataclass(frozen=True)
class Window:
    """One window of an interleaved measurement: the candidate's samples, then the reference's."""

    a_ms: float                 # median of the candidate's samples
    r_ms: float                 # median of the reference's samples
    interference: Interference
    discarded: bool

    @property
    def ratio(self) -> float:
        return self.a_ms / self.r_ms


@record("reference_ratio")
@dataclass(frozen=True)
class ReferenceRatio:
    """The candidate's time as a ratio to a fixed reference library measured in the same windows."""

    library: str
    library_sha256: str
    ratio: float                    # median over the kept windows of candidate / reference
    ratio_ci: tuple[float, float]   # distribution-free 95 % interval of that median
    reference_ms: float             # the reference's median over the kept windows
    windows: tuple[Window, ...]
    discarded: int                  # windows dropped for interference (all kept when every one had some)


def interfered(i: Interference, proto: Protocol) -> bool:
    """A window is disturbed when preemptions could have moved a block's median (each one
    inflates at most one of the window's ``2 * window_samples`` samples), or time was stolen."""
    return ((i.preemptions or 0) > proto.max_preempted * 2 * proto.window_samples
            or (i.steal_share or 0.0) > proto.max_steal)


def time_interleaved(vm, ref_vm, dev, x, x_ref, proto: Protocol,
                     watch: Callable[[], WindowWatch]) -> tuple[Outcome, list[Window]]:
    """Candidate ``vm`` and reference ``ref_vm`` in alternating windows (A, R, A, R, …) until
    ``min_windows`` clean windows give a ratio whose interval is within ``rel_ci`` of it, or
    ``max_windows``. The outcome holds the candidate's samples of the kept windows."""
    na, nr = calibrate_number(vm, dev, x, proto), calibrate_number(ref_vm, dev, x_ref, proto)
    sa, sr = sampler(vm, dev, x, na), sampler(ref_vm, dev, x_ref, nr)
    windows: list[Window] = []
    samples: list[list[float]] = []
    while len(windows) < proto.max_windows:
        w = watch()
        a, r = sa(proto.window_samples), sr(proto.window_samples)
        seen = w.finish()
        windows.append(Window(float(np.median(a)), float(np.median(r)), seen, interfered(seen, proto)))
        samples.append(a)
        kept = [w.ratio for w in windows if not w.discarded]
        if len(kept) >= proto.min_windows:
            lo, hi = median_ci(kept, proto.confidence)
            if (hi - lo) / 2 <= proto.rel_ci * float(np.median(kept)):
                break
    if all(w.discarded for w in windows):   # every window disturbed: keep them all, and say so (not converged)
        windows = [Window(w.a_ms, w.r_ms, w.interference, False) for w in windows]
    keep = [s for s, w in zip(samples, windows) if not w.discarded]
    ratios = [w.ratio for w in windows if not w.discarded]
    lo, hi = median_ci(ratios, proto.confidence)
    converged = len(ratios) >= proto.min_windows and (hi - lo) / 2 <= proto.rel_ci * float(np.median(ratios))
    xs = [v for s in keep for v in s]
    return Outcome(tuple(xs), median_ci(xs, proto.confidence), bool(converged), 0, na), windows


def reference_ratio(ref_lib, windows: list[Window], proto: Protocol) -> ReferenceRatio:
    from ..fsio import sha256_file

    kept = [w for w in windows if not w.discarded]
    ratios = [w.ratio for w in kept]
    return ReferenceRatio(os.fspath(ref_lib), sha256_file(ref_lib), float(np.median(ratios)),
                          median_ci(ratios, proto.confidence), float(np.median([w.r_ms for w in kept])),
                          tuple(windows), len(windows) - len(kept))


@record("measurement")
@dataclass(frozen=True)
class Measurement:
    """One protocol measurement of one library, with everything needed to trust or redo it."""

    stats: LatencyStats
    ci_ms: tuple[float, float]
    converged: bool
    outliers_remeasured: int
    protocol: Protocol
    target: str
    key: str               # RPC key ("" when measured on this host)
    tracker: str           # "" when measured on this host
    device_id: str         # the server's address, or "local:<host>"
    threads: int
    pinning: str
    library: str
    library_sha256: str
    input_shape: tuple[int, ...]
    versions: dict[str, str]
    measured_at: float
    cores: str = ""                           # the CPUs it ran on and held the lock of ("" when not known)
    reference: ReferenceRatio | None = None   # interleaved with a reference library: the ratio to it


def make_measurement(outcome: Outcome, *, proto: Protocol, target: str, key: str, tracker: str, device_id: str,
                     device: str, threads: int, pinning: str, library: str, input_shape,
                     context: MachineLoad | None = None, emulated: bool = False, cores: CoreSet | None = None,
                     reference: ReferenceRatio | None = None) -> Measurement:
    from ..fsio import sha256_file

    stats = LatencyStats.from_samples(outcome.samples_ms, number=outcome.number, threads=threads,
                                      where=f"rpc:{tracker}/{key}" if tracker else device_id, device=device,
                                      context=context, emulated=emulated)
    return Measurement(stats, outcome.ci_ms, outcome.converged, outcome.remeasured, proto, target, key, tracker,
                       device_id, threads, pinning, os.fspath(library), sha256_file(library),
                       tuple(int(d) for d in input_shape), software_versions(), time.time(),
                       cores.describe() if cores else "", reference)


def input_tensor(shape, dev):
    """The fixed random input every measurement times (latency does not depend on the values)."""
    import tvm

    return tvm.runtime.tensor(np.random.default_rng(0).standard_normal(shape).astype("float32"), dev)


def append_journal(path, m: Measurement) -> None:
    """Append ``m`` as one JSON line (append-only: concurrent writers never clobber each other)."""
    import json
    from pathlib import Path

    from ..records import to_dict

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(to_dict(m), sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def measure_here(lib_path, input_shape, proto: Protocol | None = None, *, min_samples: int | None = None,
                 target: str, journal=None, reference=None, reference_shape=None) -> Measurement:
    """Measure ``lib_path`` on this host with the protocol (the local twin of ``Farm.measurement``),
    interleaved with the library ``reference`` when one is given, holding the locks of the cores
    TVM's pool runs on."""
    mask = os.sched_getaffinity(0)   # TVM's bound pool pins this (main) thread: given back below
    try:
        return _measure_here(lib_path, input_shape, proto or Protocol(), min_samples, target, journal, reference,
                             reference_shape)
    finally:
        if os.sched_getaffinity(0) != mask:   # else training after a measurement runs on one core
            os.sched_setaffinity(0, mask)


def _measure_here(lib_path, input_shape, proto, min_samples, target, journal, reference, reference_shape) -> Measurement:
    import socket

    import tvm
    import tvm_ffi
    from tvm import relax

    from .local import cpu_name

    dev = tvm.cpu()
    threads, pinning = configure_threads(tvm_ffi.get_global_func, proto)
    if hasattr(os, "sched_getaffinity"):
        pinning += f"; main thread on cores {sorted(os.sched_getaffinity(0))}"
    vm = relax.VirtualMachine(tvm.runtime.load_module(os.fspath(lib_path)), dev)
    x = input_tensor(input_shape, dev)
    cores, ratio = this_process_cores(threads), None
    with core_lock(cores):
        watch = LoadWatch()
        if reference is None:
            out = time_vm(vm, dev, x, proto, min_samples)
        else:
            ref_vm = relax.VirtualMachine(tvm.runtime.load_module(os.fspath(reference)), dev)
            out, windows = time_interleaved(vm, ref_vm, dev, x, input_tensor(reference_shape or input_shape, dev), proto,
                                            lambda: WindowWatch(cores.cpus, (os.getpid(),)))
            ratio = reference_ratio(reference, windows, proto)
        load = watch.finish()
    m = make_measurement(out, proto=proto, target=target, key="", tracker="", device_id=f"local:{socket.gethostname()}",
                         device=cpu_name(), threads=threads, pinning=pinning, library=lib_path, input_shape=input_shape,
                         context=load, cores=cores, reference=ratio)
    warn_if_busy(load, os.path.basename(os.fspath(lib_path)))
    if journal is not None:
        append_journal(journal, m)
    return m


__all__ = ["Protocol", "Outcome", "Measurement", "Window", "ReferenceRatio", "median_ci", "outlier_mask", "run_protocol",
           "time_vm", "time_interleaved", "reference_ratio", "configure_threads", "measure_here", "make_measurement",
           "append_journal", "input_tensor"]
