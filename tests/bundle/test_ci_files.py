"""The CI entry points: scripts/ci_artifacts and the example GitHub workflow."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "ci_artifacts"
WORKFLOW = REPO / ".github" / "workflows" / "edgenas.yml"


def test_ci_artifacts_rejects_unknown_arguments_with_one_line():
    proc = subprocess.run([str(SCRIPT), "--nope"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: unknown argument --nope")
    assert "--targets" in subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, timeout=30).stdout


def test_workflow_runs_the_same_steps_and_gates_on_the_farm_only_when_configured():
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed")
    wf = yaml.safe_load(WORKFLOW.read_text())
    jobs = wf["jobs"]
    assert {"test", "artifacts", "farm-gate"} <= set(jobs)
    steps = lambda job: " ".join(s.get("run", "") + s.get("uses", "") for s in jobs[job]["steps"])  # noqa: E731
    assert "scripts/test" in steps("test")
    assert "scripts/ci_artifacts" in steps("artifacts") and "upload-artifact" in steps("artifacts")
    gate = jobs["farm-gate"]
    assert "edgenas bench" in steps("farm-gate") and "--baseline" in steps("farm-gate")
    assert 'edgenas bench "artifacts/bundles/' in steps("farm-gate")   # the bundles the workflow built
    assert "secrets.EDGENAS_TRACKER" in gate["env"]["EDGENAS_TRACKER"] and "farm-configured" in gate["if"]
    assert "secrets" not in gate["if"]  # secrets are not available in a job-level `if`


def test_git_keeps_a_targets_latency_baseline_and_nothing_else_of_tuning_logs():
    """The gate's baseline must be committable (docs/ci.md); tuning databases and op tables are per machine."""
    def ignored(path: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO, timeout=30).returncode == 0

    if subprocess.run(["git", "rev-parse"], cwd=REPO, capture_output=True, timeout=30).returncode != 0:
        pytest.skip("not a git checkout")
    assert not ignored("tuning_logs/rpi4/baseline.json") and not ignored("tuning_logs/x86-avx2/baseline.json")
    assert ignored("tuning_logs/rpi4/op_table.json") and ignored("tuning_logs/x86-avx2/database/records.json")


@pytest.mark.slow
def test_ci_artifacts_end_to_end(tmp_path, tiny_recipe):
    """The whole script on a small build: bundles verified for every target this host can build."""
    from edgenas.measure import aarch64_check

    targets = ["x86-avx2"] + ([] if aarch64_check.missing_tools() else ["rpi4"]) + (["cuda-sm80"] if _has("nvcc") else [])
    t0 = time.time()
    proc = subprocess.run([str(SCRIPT), "--targets", ",".join(targets), "--out", str(tmp_path), "--",
                           "--rounds", "1", "--search-epochs", "3", "--epochs", "3", "--image-size", "8",
                           "--recipe", str(tiny_recipe)],
                          capture_output=True, text=True, timeout=1800, env={**os.environ, "COLUMNS": "200"})
    print(f"ci_artifacts: {time.time() - t0:.0f} s")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"all {len(targets)} bundles verified" in proc.stdout
    for t in targets:
        assert (tmp_path / "bundles" / t / "SHA256SUMS").exists()
    assert (tmp_path / "run" / "report.html").exists()


def _has(tool: str) -> bool:
    import shutil

    return shutil.which(tool) is not None
