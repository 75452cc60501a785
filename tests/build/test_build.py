"""The spine end to end: a tiny build through every real stage (kill -9 / --resume: tests/reliability)."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from buildkit import edgenas_cmd, tiny_build_args
from edgenas import records
from edgenas.fsio import sha256_file
from edgenas.build.manifest import Manifest

ARTIFACTS = ["arch.json", "model_fp32.onnx", "model_int8.onnx", "model_x86-avx2.so", "manifest.json", "latency.json"]


@pytest.fixture(scope="module")
def built_run(tiny_run):
    return tiny_run


def test_build_writes_a_complete_run_directory(built_run):
    out, proc = built_run
    for name in ARTIFACTS:
        assert (out / name).is_file(), name
    m = records.load(out / "manifest.json", Manifest)
    for name, digest in m.files.items():
        assert sha256_file(out / name) == digest
    assert m.software["apache-tvm"].startswith("0.27")
    assert m.latency["median_ms"] > 0 and m.latency["p90_ms"] >= m.latency["median_ms"] and m.latency["n"] >= 10
    assert set(m.stage_seconds) >= {"profile", "search", "train_fp32", "qat", "compile", "measure"}
    assert "edgenas build" in proc.stdout and "accuracy int8" in proc.stdout
    # the search cost per device type: one process, so the speed-up is exactly 1 (build/cost.py)
    cost = m.search_cost
    assert cost["processes"] == [1] and cost["speedup_bound"] == 1.0
    assert any(k.startswith("cpu: ") for k in cost["device_hours"]) and all(h > 0 for h in cost["device_hours"].values())


def test_build_accuracy_and_parity(built_run):
    m = records.load(built_run[0] / "manifest.json", Manifest)
    acc = m.accuracy
    assert acc["fp32"] > 0.6, acc
    assert acc["int8_tvm"] >= acc["int8_onnx"] - 0.01
    tvm_vs_ort = [p for p in m.parity if p["candidate"].startswith("tvm")][0]
    print("TVM vs onnxruntime int8:", tvm_vs_ort)
    assert tvm_vs_ort["top1_agreement"] >= 0.99


def test_build_runs_integer_kernels(built_run):
    m = records.load(built_run[0] / "manifest.json", Manifest)
    assert m.compile["int8_ops"].get("conv2d", 0) > 0, m.compile


def test_rounds_record_prediction_and_measurement(built_run):
    out, _ = built_run
    rows = json.loads((out / "rounds/r1/measured.json").read_text())
    assert len(rows) == 2 and rows[0]["chosen"]
    assert all(r["measured_ms"] > 0 and r["predicted_ms"] > 0 for r in rows)


# "round 2: predicted 0.035 ms, measured 0.036 ms (error 2.7 %), budget 0.062 ms met" (the stage's
# line on stderr) or "round 2 │ predicted ... (error 2.7 %) ..." (the summary table on stdout)
ROUND = re.compile(r"round (\d+)\W+predicted (\d+\.\d{3}) ms, measured (\d+\.\d{3}) ms \(error (\d+\.\d) %\), "
                   r"budget (\d+\.\d{3}) ms (met|NOT met)")
# "...; held-out 3: error 12.0 % -> 4.1 % after the refit (ratio), within ±10 % 33 -> 100 %, ..."
HELD = re.compile(r"round (\d+)\W+predicted [^\n]*?; held-out (\d+): error (\d+\.\d) % -> (\d+\.\d) % after the refit")


def test_every_round_prints_prediction_measurement_error_and_budget(tmp_path, tiny_recipe):
    """Issue 5, acceptance 3: ``edgenas build --rounds 3`` prints, for every round, the chosen
    model's predicted and measured latency, the predictor's error and whether the budget was met,
    as it goes and in the summary; a ``--resume`` (here of the finished run, which measures
    nothing again) still reports every round. ~55 s on a quiet 2-core box with the session's op table
    (built by an earlier build test), ~90 s alone."""
    out = tmp_path / "r3"
    args = [*tiny_build_args(out, tiny_recipe, search_epochs=1), "--rounds", "3", "--epochs", "1", "--samples", "0"]
    env = {**os.environ, "COLUMNS": "250"}   # rich wraps at 80 columns when not on a terminal
    first = subprocess.run(edgenas_cmd(*args), capture_output=True, text=True, timeout=900, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = subprocess.run(edgenas_cmd(*args, "--resume"), capture_output=True, text=True, timeout=600, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "compile + measure" not in resumed.stderr + resumed.stdout   # nothing measured again: the lines come from the run state

    m = records.load(out / "manifest.json", Manifest)
    expected = {(r["round"], f"{r['predicted_ms']:.3f}", f"{r['calibrated_ms']:.3f}", f"{r['pred_err_pct']:.1f}",
                 f"{r['budget_ms']:.3f}", "met" if r["budget_met"] else "NOT met") for r in m.rounds}
    assert sorted(r["round"] for r in m.rounds) == [1, 2, 3]
    assert all(r["budget_met"] == (r["calibrated_ms"] <= r["budget_ms"]) for r in m.rounds)
    for proc in (first, resumed):
        for stream in (proc.stderr, proc.stdout):
            found = [(int(g[0]), *g[1:]) for g in ROUND.findall(stream)]
            assert sorted(found) == sorted(expected), stream[-3000:]
            held = {(int(g[0]), int(g[1]), g[2], g[3]) for g in HELD.findall(stream)}
            assert held == {(r["round"], 3, f"{r['heldout_before']['mape']:.1f}", f"{r['heldout_after']['mape']:.1f}")
                            for r in m.rounds}, stream[-3000:]


def test_the_feedback_loop_keeps_a_held_out_set_and_scores_every_round_before_and_after_its_refit(built_run):
    """Issue 18: the held-out candidates are measured once, never fitted, and every round's error on
    them is in the manifest; every candidate is measured interleaved with the run's reference."""
    out, _ = built_run
    m = records.load(out / "manifest.json", Manifest)
    held = json.loads((out / "heldout.json").read_text())
    fitted = {row["arch"] for r in m.rounds for row in json.loads((out / f"rounds/r{r['round']}/measured.json").read_text())}
    assert len(held) == 3 and not {h["arch"] for h in held} & fitted
    ref = json.loads((out / "reference.json").read_text())
    for row in held:
        assert row["reference"] == ref["arch"] and row["calibrated_ms"] == pytest.approx(row["ratio"] * ref["calibrated_ms"])
        assert 0 <= row["discarded"] <= row["windows"]
    for r in m.rounds:
        assert r["heldout_before"]["n"] == r["heldout_after"]["n"] == 3 and r["windows"] > 0
        assert r["refit_kind"] in ("identity", "ratio", "affine", "ridge")
    assert m.rounds[0]["predictor_kind"] == "identity"           # round 1 searched with the table sum


def test_second_build_into_same_dir_refuses(built_run, tiny_recipe):
    out, _ = built_run
    proc = subprocess.run(edgenas_cmd(*tiny_build_args(out, tiny_recipe)), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "--resume" in proc.stderr and "Traceback" not in proc.stderr


def test_measure_command_remeasures_the_run_and_journals_it(built_run):
    """``--repeat 3000`` (it overflowed the median's interval once), appended to the run's journal
    with the machine's load."""
    import json

    journal = built_run[0] / "measurements.jsonl"
    before = journal.read_text().splitlines()
    proc = subprocess.run(edgenas_cmd("measure", str(built_run[0]), "--repeat", "3000"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "median" in proc.stdout and " ms" in proc.stdout and "machine load" in proc.stdout
    after = journal.read_text().splitlines()
    assert after[:len(before)] == before and len(after) == len(before) + 1
    stats = json.loads(after[-1])["data"]["stats"]
    assert stats["n"] == 3000 and stats["context"]["load_1min"] >= 0 and 0 <= stats["context"]["other_cpu_share"] <= 1


def test_measure_command_on_a_non_run_is_one_line(tmp_path):
    proc = subprocess.run(edgenas_cmd("measure", str(tmp_path)), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no finished edgenas run" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_measurements_are_kept_for_later_runs_and_reused_on_request(built_run, tmp_path):
    """Every round's whole-model measurements go to tuning_logs/<target>/latency_points.json; a
    later build with ``reuse_latency`` fits its first predictor on them (snapshotted in its run)."""
    import dataclasses

    from edgenas import fsio
    from edgenas.tuning_store import TuningStore
    from edgenas.latency.table import LatencyTable
    from edgenas.build.config import BuildConfig
    from edgenas.build.progress import Reporter
    from edgenas.build.stages import Build
    from edgenas.target import get_target

    out, _ = built_run
    rows = json.loads((out / "rounds/r1/measured.json").read_text())
    kept = {(p.arch, p.measured_ms, p.where) for p in TuningStore("x86-avx2").latency_points().points}
    assert {(r["arch"], r["measured_ms"], "local") for r in rows} <= kept

    cfg = records.from_dict({"type": "build_config", "version": 1, "data": fsio.read_json(out / "state.json")["config"]},
                            BuildConfig)
    x86 = get_target("x86-avx2")
    later = Build(dataclasses.replace(cfg, out=str(tmp_path / "later"), reuse_latency=True), x86, Reporter(), resume=False)
    later.run_dir.path.mkdir(parents=True)
    ref = fsio.read_json(out / "reference.json")
    points = later.earlier_runs(records.load(out / "op_table.json", LatencyTable), ref)
    assert {(p["arch"], p["measured_ms"]) for p in points} >= {(r["arch"], r["measured_ms"]) for r in rows}
    assert (tmp_path / "later" / "earlier_points.json").is_file()
    off = Build(dataclasses.replace(cfg, out=str(tmp_path / "off")), x86, Reporter(), resume=False)
    assert off.earlier_runs(records.load(out / "op_table.json", LatencyTable), ref) == []
