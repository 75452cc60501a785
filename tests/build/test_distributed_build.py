"""``edgenas build --nproc 2`` (two gloo processes on loopback) finishes the tiny build, picks the
architecture of the one-process build and reports its cost per process (docs/distributed.md).

"The same architecture" is asserted where the one-process search decided: the tiny build's
search leaves softmax(alpha) within ~0.01 of uniform, and a layer whose top two candidates are
closer than the 2-process noise (BatchNorm's per-shard statistics on 32-image shards: up to
6e-3 seen on digits) is a coin toss for either run. The decided toy search of tests/train/test_train_device.py checks exact equality."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from buildkit import edgenas_cmd, tiny_build_args
from edgenas import records
from edgenas.build.manifest import Manifest
from edgenas.search.darts import SearchResult

NOISE = 2e-2     # largest softmax(alpha) difference allowed between 1 and 2 processes
DECIDED = 2e-2   # top-2 margin of softmax(alpha) above which a layer's choice must agree


@pytest.mark.slow
def test_two_processes_build_like_one(tiny_run, tiny_recipe, tmp_path):
    ref_dir, _ = tiny_run
    out = tmp_path / "n2"
    proc = subprocess.run(edgenas_cmd(*tiny_build_args(out, tiny_recipe), "--nproc", "2", "--train-device", "cpu"),
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = (records.load(d / "rounds" / "r1" / "search.json", SearchResult) for d in (ref_dir, out))
    for i, (p1, p2, l1, l2) in enumerate(zip(one.alphas, two.alphas, one.arch.layers, two.arch.layers)):
        assert np.abs(np.subtract(p1, p2)).max() < NOISE, (i, p1, p2)
        top2 = np.sort(p1)[-2:]
        if top2[1] - top2[0] > DECIDED:
            assert l1 == l2, (i, p1, p2)
    m = records.load(out / "manifest.json", Manifest)
    assert m.search_cost["processes"] == [2] and m.search_cost["speedup_bound"] > 1.0
    assert abs(m.accuracy["fp32"] - records.load(ref_dir / "manifest.json", Manifest).accuracy["fp32"]) < 0.05
