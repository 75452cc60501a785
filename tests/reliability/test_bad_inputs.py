"""Every case of the corpus: one readable line, the right exit code, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .corpus import CASES, REPO


def run_case(case, tmp_path):
    if not case.runnable():
        pytest.skip("needs a user namespace (unshare -rm) to mount a tiny tmpfs")
    cmd = case.command(tmp_path, sys.executable)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)})
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    return proc, before, after


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case, tmp_path, tuning_root):
    tuning_before = sorted(tuning_root.rglob("*"))
    proc, before, after = run_case(case, tmp_path)
    err = proc.stderr.strip()
    assert proc.returncode == case.exit_code, (proc.returncode, err)
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for word in case.expect:
        assert word in err, (word, err)
    assert after == before, f"files were written: {sorted(set(after) - set(before))}"
    assert sorted(tuning_root.rglob("*")) == tuning_before, "tuning_logs changed"
