"""The measurement protocol: CI of the median, outlier re-measurement, stopping, the record."""

from __future__ import annotations

import numpy as np
import pytest

from edgenas import records
from edgenas.measure.protocol import Measurement, Protocol, measure_here, median_ci, outlier_mask, run_protocol

from .conftest import TINY_SHAPE


def test_median_ci_is_the_order_statistic_interval():
    x = np.arange(1, 21, dtype=float)               # n = 20: the 95 % interval is [x_(6), x_(15)]
    assert median_ci(x) == (6.0, 15.0)
    assert median_ci([3.0, 1.0, 2.0]) == (1.0, 3.0)  # too few for 95 %: the whole range


def _exact_ci_rank(n: int, alpha: float = 0.05) -> int:
    """The order-statistic rank by exact integer arithmetic (fractions cannot overflow)."""
    from fractions import Fraction
    from math import comb

    j, tail = 0, Fraction(0)
    while j < n // 2:
        tail += Fraction(comb(n, j), 2**n)
        if 2 * tail > Fraction(alpha).limit_denominator(10**6):
            break
        j += 1
    return max(j, 1)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 6, 9, 10, 20, 31, 100, 999, 1000, 1001, 3000])
def test_median_ci_rank_matches_the_exact_binomial_sum(n):
    x = np.arange(1, n + 1, dtype=float)
    j = _exact_ci_rank(n)
    assert median_ci(x) == (float(j), float(n + 1 - j))


@pytest.mark.parametrize("n", [1, 2, 7, 100, 3000, 10_000, 100_000])
def test_median_ci_is_finite_ordered_and_shrinks_at_any_n(n):
    x = np.random.default_rng(n).lognormal(0, 0.3, n)
    lo, hi = median_ci(x)
    assert np.isfinite([lo, hi]).all() and lo <= float(np.median(x)) <= hi
    if n >= 100:  # the interval's rank width follows the normal approximation 1.96 sqrt(n)
        width = np.searchsorted(np.sort(x), hi) - np.searchsorted(np.sort(x), lo)
        assert abs(width - 1.96 * np.sqrt(n)) <= 3


def test_median_ci_covers_the_true_median():
    rng = np.random.default_rng(0)
    hits = sum(lo <= 1.0 <= hi for lo, hi in (median_ci(rng.lognormal(0, 0.3, 30)) for _ in range(400)))
    assert hits / 400 >= 0.93


def test_outliers_are_remeasured_within_budget():
    fresh = iter([1.0] * 100)
    calls = []

    def sample(n):
        calls.append(n)
        return [5.0, 1.0, 1.01, 0.99] * (n // 4) + [1.0] * (n % 4) if len(calls) == 1 else [next(fresh) for _ in range(n)]

    out = run_protocol(sample, Protocol(min_samples=8, max_samples=50, rel_ci=0.05))
    assert out.remeasured == 2 and 5.0 not in out.samples_ms and out.converged


def test_outlier_budget_keeps_persistent_outliers():
    # the first batch has one slow sample, and every re-measurement is slow again
    out = run_protocol(lambda n: [1.0] * (n - 1) + [9.0] if n >= 8 else [9.0] * n,
                       Protocol(min_samples=8, max_samples=16, max_remeasure=3, rel_ci=0.5))
    assert out.remeasured == 3 and 9.0 in out.samples_ms


def test_stops_at_the_cap_when_noisy_and_early_when_quiet():
    rng = np.random.default_rng(1)
    noisy = run_protocol(lambda n: list(rng.uniform(1, 3, n)), Protocol(min_samples=10, max_samples=40, rel_ci=0.01))
    assert not noisy.converged and len(noisy.samples_ms) == 40
    quiet = run_protocol(lambda n: list(1 + 1e-4 * rng.standard_normal(n)), Protocol(min_samples=10, max_samples=40))
    assert quiet.converged and len(quiet.samples_ms) == 10


def test_outlier_mask_ignores_a_constant_series():
    assert not outlier_mask([2.0] * 10, 5).any()


@pytest.mark.parametrize("threads", [0, 1])
def test_measure_here_records_threads_pinning_and_versions(tiny_lib, tmp_path, threads):
    journal = tmp_path / "m.jsonl"
    m = measure_here(tiny_lib, TINY_SHAPE, Protocol(min_samples=10, max_samples=30, threads=threads),
                     target="x86-avx2", journal=journal)
    assert m.stats.median_ms > 0 and m.ci_ms[0] <= m.stats.median_ms <= m.ci_ms[1]
    assert m.threads >= 1 and "cores" in m.pinning and m.versions["apache-tvm"] and m.device_id.startswith("local:")
    assert len(m.library_sha256) == 64 and m.input_shape == TINY_SHAPE
    assert records.from_dict(records.to_dict(m), Measurement) == m
    import json

    assert records.from_dict(json.loads(journal.read_text().splitlines()[0]), Measurement) == m


def test_measurement_records_the_load_and_warns_beside_a_cpu_hog(tiny_lib, tmp_path, capsys, monkeypatch):
    import os
    import subprocess
    import sys

    from edgenas.measure import context

    monkeypatch.setattr(context, "_last_warning", [float("-inf")])
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        import time

        time.sleep(0.5)
        m = measure_here(tiny_lib, TINY_SHAPE, Protocol(min_samples=200, max_samples=200), target="x86-avx2",
                         journal=tmp_path / "m.jsonl")
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    load = m.stats.context
    assert load is not None and load.cores >= 1 and load.load_1min >= 0 and load.seconds > 0
    assert load.busy and load.other_cpu_share >= context.BUSY_SHARE
    err = capsys.readouterr().err
    assert "busy machine" in err and "tiny_int8.so" in err and len(err.strip().splitlines()) == 1
    import json

    line = json.loads((tmp_path / "m.jsonl").read_text().splitlines()[0])
    assert line["data"]["stats"]["context"]["other_cpu_share"] == load.other_cpu_share


def test_measuring_here_gives_the_main_thread_its_cores_back(tiny_lib):
    """TVM's bound pool pins the calling thread to one core; a build that trains after a local
    measurement (and every process it starts) would otherwise train on that one core."""
    import os

    before = os.sched_getaffinity(0)
    measure_here(tiny_lib, TINY_SHAPE, Protocol(min_samples=5, max_samples=10, threads=1), target="x86-avx2")
    assert os.sched_getaffinity(0) == before
