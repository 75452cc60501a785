"""kill -9 at each stage, then --resume: the run finishes with the results of an uninterrupted run.

Computation here is deterministic on one machine (per-epoch reseeding, checkpoints that carry the
optimizer state), so search results and trained weights are compared exactly; latencies are
measurements and only have to exist. Killing mid-search runs by default; the other stages are slow.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from buildkit import edgenas_cmd, tiny_build_args
from edgenas import records
from edgenas.search.darts import SearchResult

def _args(out: Path, recipe: Path) -> list[str]:
    return tiny_build_args(out, recipe)


@pytest.fixture(scope="module")
def reference(tiny_run):
    return tiny_run[0]


def _kill_when(out: Path, recipe: Path, ready) -> None:
    proc = subprocess.Popen(edgenas_cmd(*_args(out, recipe)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 900
    while proc.poll() is None and time.time() < deadline and not ready(out):
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def _done(out: Path) -> dict:
    p = out / "state.json"
    return json.loads(p.read_text())["completed"] if p.exists() else {}


def _same_results(a: Path, b: Path) -> None:
    ra = records.load(a / "rounds/r1/search.json", SearchResult)
    rb = records.load(b / "rounds/r1/search.json", SearchResult)
    assert ra.arch == rb.arch and ra.alphas == rb.alphas
    assert [h["val_acc"] for h in ra.history] == [h["val_acc"] for h in rb.history]
    wa, wb = torch.load(a / "model_fp32.pt"), torch.load(b / "model_fp32.pt")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (a / "arch.json").read_text() == (b / "arch.json").read_text()


STAGES = {
    "search": lambda out: (out / "rounds/r1/search_ckpt.pt").exists(),
    "final_training": lambda out: (out / "train_fp32_ckpt.pt").exists() and "train_fp32" not in _done(out),
    "qat": lambda out: "train_fp32" in _done(out) and "qat" not in _done(out),
    "compile": lambda out: "export" in _done(out) and "compile" not in _done(out),
    "measure": lambda out: "compile" in _done(out) and "measure" not in _done(out),
}


@pytest.mark.parametrize("stage", [pytest.param(s, marks=[] if s == "search" else [pytest.mark.slow]) for s in STAGES])
def test_kill_then_resume_equals_uninterrupted(stage, reference, tmp_path, tiny_recipe):
    out = tmp_path / "run"
    _kill_when(out, tiny_recipe, STAGES[stage])
    assert "measure" not in _done(out), "the build finished before the kill"
    proc = subprocess.run(edgenas_cmd(*_args(out, tiny_recipe), "--resume"), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    _same_results(reference, out)


def test_second_build_into_a_busy_out_is_refused(tmp_path, tiny_recipe):
    out = tmp_path / "run"
    first = subprocess.Popen(edgenas_cmd(*_args(out, tiny_recipe)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not (out / "state.json").exists() and time.time() < deadline:
            time.sleep(0.05)
        second = subprocess.run(edgenas_cmd(*_args(out, tiny_recipe), "--resume"), capture_output=True, text=True, timeout=300)
        assert second.returncode == 2
        assert "another edgenas build is writing" in second.stderr and len(second.stderr.strip().splitlines()) == 1
    finally:
        first.kill()
        first.wait()


def test_resume_with_other_options_is_refused(reference, tiny_recipe):
    args = _args(reference, tiny_recipe)
    args[args.index("--epochs") + 1] = "7"
    proc = subprocess.run(edgenas_cmd(*args, "--resume"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "different configuration" in proc.stderr and "final_epochs" in proc.stderr
