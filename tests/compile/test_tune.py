"""MetaSchedule tuning into a shared tuning_logs/<target>/ database: every candidate builds (the
tensor_intrin import trap is solved), a second compile runs no trials, and concurrent or killed
tuners leave a database MetaSchedule loads, holding every run's records."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from edgenas.compile import compile_onnx, frontend, pipeline, tune, tuning_db
from edgenas.errors import EdgenasError
from edgenas.target import get_target

SHAPE = (1, 3, 16, 16)


def _conv_onnx(path, out_channels: int):
    """conv3x3 + ReLU: one fused task, distinct per ``out_channels``."""
    import torch
    from torch import nn

    torch.manual_seed(out_channels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(nn.Sequential(nn.Conv2d(3, out_channels, 3, padding=1), nn.ReLU()).eval(),
                          (torch.randn(*SHAPE),), str(path), opset_version=17, dynamo=False,
                          input_names=["input"], output_names=["out"])
    return path


def _tvm(lib, x):
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(tvm.runtime.load_module(str(lib)), tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x)).numpy()


def test_all_builds_succeed_and_second_compile_reuses_db(tmp_path):
    import onnxruntime as ort

    spec, db_dir = get_target("x86-avx2"), tmp_path / "tl"
    model = _conv_onnx(tmp_path / "conv.onnx", 8)
    fused = pipeline.fuse(frontend.import_onnx(model), spec)
    stats = tune.tune(fused, spec, str(db_dir), trials=16)
    assert stats.trials >= 16 and stats.build_errors == 0 and stats.run_errors == 0, stats
    assert tuning_db.count_records(db_dir) == stats.trials

    t0 = time.perf_counter()
    res = compile_onnx(model, spec, tmp_path / "conv.so", trials=16, tuning_dir=db_dir)
    assert res.trials == 0 and res.tuned and res.db_records == stats.trials
    assert time.perf_counter() - t0 < 60
    x = np.random.default_rng(0).standard_normal(SHAPE).astype("float32")
    ref = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    np.testing.assert_allclose(_tvm(res.library, x), ref, atol=1e-5)


def test_the_first_trial_of_every_task_is_its_default_schedule(tmp_path):
    """A budget of one trial per task measures only the defaults: the record replays exactly the
    schedule an untuned build gives the kernel, so the database's best is never worse than it."""
    import tvm_ffi
    from tvm.s_tir.meta_schedule.relax_integration import extract_tasks

    from edgenas.compile import default_schedule, packed_dot

    spec, db_dir = get_target("x86-avx2"), tmp_path / "tl"
    fused = pipeline.fuse(frontend.import_onnx(_conv_onnx(tmp_path / "conv.onnx", 8)), spec)
    (task,) = extract_tasks(fused, spec.tvm(), module_equality=tune.MODULE_EQUALITY)
    stats = tune.tune(fused, spec, str(db_dir), trials=1)
    assert stats.trials == 1 and stats.run_errors == 0, stats
    database, n = tuning_db.load(db_dir, tune.MODULE_EQUALITY)
    assert n == 1
    (record,) = database.get_all_tuning_records()
    assert len(record.run_secs) == tune.EVALUATOR["repeat"]  # timed one call per sample, caches flushed
    tgt = spec.tvm()
    replayed, _ = pipeline.tuned_schedule(task.dispatched[0], database, tgt)
    with tgt:
        packed_dot.register()
        default = default_schedule.default_for(task.dispatched[0]["main"], tgt, packed_dot.kernel_for(spec))
    assert len(default.trace.insts) > 3  # really scheduled, not the bare function
    assert tvm_ffi.structural_equal(replayed.mod, default.mod)


def test_cpu_candidates_are_timed_with_cold_weights_and_gpu_ones_hot():
    """docs/tuning.md, "How a candidate is timed": one call per sample, caches flushed of all but
    the input on a CPU; the flush is a CPU operation, so not for CUDA."""
    cpu = tune.evaluator_config(get_target("x86-avx2").tvm())
    assert (cpu.number, cpu.repeat, cpu.min_repeat_ms, cpu.enable_cpu_cache_flush) == (1, 15, 0, True)
    assert not tune.evaluator_config(get_target("cuda-sm80").tvm()).enable_cpu_cache_flush


_TUNER = textwrap.dedent("""
    import sys
    from edgenas.compile import frontend, pipeline, tune
    from edgenas.target import get_target
    model, db_dir, trials, per_round = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    spec = get_target("x86-avx2")
    fused = pipeline.fuse(frontend.import_onnx(model), spec)
    stats = tune.tune(fused, spec, db_dir, trials, trials_per_round=per_round,
                      progress=lambda m: print(m, flush=True))
    print("done", stats.trials, stats.build_errors, flush=True)
""")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def _spawn(model, db_dir, trials, per_round):
    return subprocess.Popen([sys.executable, "-c", _TUNER, str(model), str(db_dir), str(trials), str(per_round)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)


@pytest.mark.slow  # 45 s; the per-trial kill test below stays in the default run
def test_concurrent_and_killed_tuners_leave_a_loadable_db_with_both_runs(tmp_path):
    from tvm.s_tir import meta_schedule as ms

    spec, db_dir = get_target("x86-avx2"), tmp_path / "tl"
    a, b = _conv_onnx(tmp_path / "a.onnx", 8), _conv_onnx(tmp_path / "b.onnx", 16)
    finished = _spawn(a, db_dir, 4, 2)
    killed = _spawn(b, db_dir, 400, 2)  # far more than it will be allowed to run
    try:
        for line in killed.stdout:  # kill -9 right after its first checkpoint merge
            if line.startswith("tuned "):
                os.killpg(killed.pid, signal.SIGKILL)
                break
        out, _ = finished.communicate(timeout=300)
    finally:
        for p in (finished, killed):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert killed.returncode == -signal.SIGKILL
    assert "done 4 0" in out, out

    snapshot = tmp_path / "snapshot"  # MetaSchedule itself loads the shared files as they are
    shutil.copytree(db_dir, snapshot)
    full = ms.database.JSONDatabase(work_dir=str(snapshot), allow_missing=False, module_equality=tune.MODULE_EQUALITY)
    assert len(full) == tuning_db.count_records(db_dir) >= 4 + 2
    best, _ = tuning_db.load(db_dir, tune.MODULE_EQUALITY)
    tgt = spec.tvm()
    for model in (a, b):
        fused = pipeline.fuse(frontend.import_onnx(model), spec)
        for task in ms.relax_integration.extract_tasks(fused, tgt, module_equality=tune.MODULE_EQUALITY):
            assert best.query_tuning_record(task.dispatched[0], tgt, task.task_name) is not None, (model, task.task_name)


def test_merge_remaps_dedupes_and_skips_partial_lines(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    (dst / tuning_db.WORKLOADS).write_text('["h1","W1"]\n')
    (dst / tuning_db.RECORDS).write_text('[0,{"r":"old"}]\n')
    (src / tuning_db.WORKLOADS).write_text('["h0","W0"]\n["h1","W1"]\n')
    (src / tuning_db.RECORDS).write_text('[0,{"r":"a"}]\n[1,{"r":"b"}]\n[1,{"r":"half-writ')  # killed mid-append
    first = tuning_db.merge(src, dst)
    again = tuning_db.merge(src, dst)
    assert (first.consumed, first.new_workloads, first.new_records) == (2, 1, 2)
    assert (again.new_workloads, again.new_records, again.total_records) == (0, 0, 3)
    assert (dst / tuning_db.WORKLOADS).read_text() == '["h1","W1"]\n["h0","W0"]\n'
    assert (dst / tuning_db.RECORDS).read_text() == '[0,{"r":"old"}]\n[1,{"r":"a"}]\n[0,{"r":"b"}]\n'


def test_a_killed_tuner_keeps_every_measured_trial_and_the_rerun_runs_only_the_rest(tmp_path):
    """One batch of 8 trials, killed once half are in the shared DB: the old batch-level merge
    lost all of them. The rerun tunes the 4 or so left; the killed run's work dir is swept."""
    import glob
    import tempfile

    spec, db_dir, trials = get_target("x86-avx2"), tmp_path / "tl", 8
    model = _conv_onnx(tmp_path / "conv.onnx", 4)
    # kill -9 from inside, right after the 4th trial was counted (deterministic, unlike a poll)
    hook = textwrap.dedent("""
        import os, signal
        from edgenas.compile import tuning_db
        count, n = tuning_db.count_trial, [0]
        def count_then_die(*a):
            count(*a)
            n[0] += 1
            if n[0] == 4:
                os.kill(os.getpid(), signal.SIGKILL)
        tuning_db.count_trial = count_then_die
    """)
    killed = subprocess.Popen([sys.executable, "-c", hook + _TUNER, str(model), str(db_dir), str(trials), str(trials)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        killed.wait(timeout=600)
    finally:
        if killed.poll() is None:
            os.killpg(killed.pid, signal.SIGKILL)
            killed.wait()
    assert killed.returncode == -signal.SIGKILL
    if _group_alive(killed.pid):  # its build and run workers
        os.killpg(killed.pid, signal.SIGKILL)
    kept = tuning_db.count_records(db_dir)
    assert kept == trials // 2, kept
    assert glob.glob(os.path.join(tempfile.gettempdir(), f"{tune.WORK_PREFIX}{killed.pid}-*"))

    fused = pipeline.fuse(frontend.import_onnx(model), spec)
    stats = tune.tune(fused, spec, str(db_dir), trials, trials_per_round=trials)
    assert stats.trials == trials - kept and stats.tasks_tuned == 1, stats
    assert tuning_db.count_records(db_dir) == trials
    assert not glob.glob(os.path.join(tempfile.gettempdir(), f"{tune.WORK_PREFIX}{killed.pid}-*"))
    assert not (db_dir / tuning_db.JOBS).exists()
    assert tune.tune(fused, spec, str(db_dir), trials, trials_per_round=trials).trials == 0  # finished: reused

    # a torn last line (a writer killed mid-append) is skipped; a garbled line is named
    records = db_dir / tuning_db.RECORDS
    good = records.read_text()
    records.write_text(good + '[0, [["half-writ')
    assert tuning_db.load(db_dir, tune.MODULE_EQUALITY)[1] == trials
    lines = good.splitlines(keepends=True)
    records.write_text("".join(lines[:2] + ["garbage\n"] + lines[2:]))
    with pytest.raises(EdgenasError, match=r"database_tuning_record\.json: line 3 .*corrupted"):
        tuning_db.load(db_dir, tune.MODULE_EQUALITY)


def test_stderr_filter_drops_a_marked_record_with_its_continuation_lines_and_keeps_the_rest(tmp_path):
    """The tensorize warning's message ends in a newline (a bare blank line follows it) and can
    span lines; the CLI's contract is one error line, so the whole record goes, and the next
    record (a TVM log header, a Python warning, edgenas' own line) passes unchanged."""
    script = textwrap.dedent(r'''
        import os, sys
        from edgenas.compile.tune import _stderr_without
        with _stderr_without("Tensorize failed"):
            os.write(2, b"[01:02:03] a.cc:1: Warning: Tensorize failed with error ScheduleError\n\n  (IR)\n")
            os.write(2, b"[01:02:04] b.cc:2: Warning: kept\n\n")
            os.write(2, b"[01:02:05] a.cc:1: Warning: Tensorize failed with error X\n\n")
            os.write(2, b"x.py:3: UserWarning: kept too\n")
        os.write(2, b"error: the one line\n")
    ''')
    err = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stderr
    assert err.splitlines() == ["[01:02:04] b.cc:2: Warning: kept", "x.py:3: UserWarning: kept too", "error: the one line"]


def _database(d, stamp: str | None):
    """A valid, empty tuning database (as a bundle's ``tuning/``), stamped ``stamp`` if given."""
    d.mkdir(parents=True, exist_ok=True)
    for name in (tuning_db.WORKLOADS, tuning_db.RECORDS):
        (d / name).write_text("")
    if stamp is not None:
        (d / tuning_db.KERNELS).write_text(stamp + "\n")


def test_a_new_database_is_stamped_with_the_kernel_version_and_kept(tmp_path, capsys):
    from edgenas.compile.kernel_version import schedule_stamp

    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    (src / tuning_db.WORKLOADS).write_text('["h0","W0"]\n')
    (src / tuning_db.RECORDS).write_text('[0,{"r":"a"}]\n')
    tuning_db.merge(src, dst)
    assert (dst / tuning_db.KERNELS).read_text().strip() == schedule_stamp()
    assert tuning_db.set_aside_stale(dst) is None and tuning_db.count_records(dst) == 1
    assert capsys.readouterr().err == ""


def test_a_database_of_other_kernels_is_moved_aside_whole_and_nothing_else(tmp_path, capsys):
    """Its records (the old default schedules among them), its ledger and its stamp move to a free
    ``database.stale-<stamp>/``, with one line; the store's other files stay where they are."""
    d = tmp_path / "x86-avx2"
    _database(d, "v0")
    (d / tuning_db.RECORDS).write_text('[0,{"r":"old default"}]\n')
    (d / tuning_db.JOBS).write_text("{}\n")
    for other in ("op_latency.json", "baseline.json", "notes.txt"):
        (d / other).write_text(other)
    aside = tuning_db.set_aside_stale(d)
    assert aside == d / "database.stale-v0" and not tuning_db.exists(d)
    assert sorted(p.name for p in aside.iterdir()) == sorted([tuning_db.WORKLOADS, tuning_db.RECORDS, tuning_db.JOBS,
                                                              tuning_db.KERNELS])
    assert (aside / tuning_db.RECORDS).read_text() == '[0,{"r":"old default"}]\n'
    assert all((d / other).read_text() == other for other in ("op_latency.json", "baseline.json", "notes.txt"))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "kernels v0" in err[0] and str(aside) in err[0], err

    _database(d, None)  # unstamped: made before kernel versions were stamped
    assert tuning_db.set_aside_stale(d) == d / "database.stale-unstamped"
    _database(d, None)
    assert tuning_db.set_aside_stale(d) == d / "database.stale-unstamped-2"
    assert "before kernel versions were stamped" in capsys.readouterr().err


def test_compile_sets_a_stale_store_database_aside_and_uses_a_given_one_as_it_is(tmp_path, monkeypatch, capsys):
    """The store's database is checked by every compile; a ``tuning_dir`` only read from (a
    bundle's ``tuning/``: its library was built with those records) is left as it is."""
    from edgenas.tuning_store import TuningStore

    monkeypatch.setenv("EDGENAS_TUNING_LOGS", str(tmp_path / "logs"))
    spec = get_target("x86-avx2")
    store, given = TuningStore(spec).database_dir, tmp_path / "bundle" / "tuning"
    _database(store, "v0")
    _database(given, "v0")
    model = _conv_onnx(tmp_path / "conv.onnx", 8)
    compile_onnx(model, spec, tmp_path / "given.so", tuning_dir=given)
    assert (given / tuning_db.KERNELS).read_text() == "v0\n" and tuning_db.exists(given)  # (load leaves its lock file)
    assert "tuning database" not in capsys.readouterr().err
    res = compile_onnx(model, spec, tmp_path / "store.so")
    assert not res.tuned and not tuning_db.exists(store) and tuning_db.exists(store / "database.stale-v0")
    assert "tuning database" in capsys.readouterr().err


@pytest.mark.parametrize("keep", [True, False])
def test_keep_tuned_decides_which_library_is_shipped(tmp_path, keep):
    """``compile_onnx(keep_tuned=...)`` builds the default schedules beside the tuned library and
    ships the one the check picks; the extra build is gone afterwards (docs/tuning.md)."""
    import onnxruntime as ort

    spec, db_dir = get_target("x86-avx2"), tmp_path / "tl"
    model = _conv_onnx(tmp_path / "conv.onnx", 8)
    tune.tune(pipeline.fuse(frontend.import_onnx(model), spec), spec, str(db_dir), trials=2)
    seen = []

    def check(tuned, default):
        seen.append((tuned.stat().st_size > 0, default.stat().st_size > 0, tuned != default))
        return keep, f"kept tuned: {keep}"

    res = compile_onnx(model, spec, tmp_path / "conv.so", tuning_dir=db_dir, keep_tuned=check)
    assert seen == [(True, True, True)] and res.tuned is keep and res.tuned_check == f"kept tuned: {keep}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conv.onnx", "conv.so", "tl"]
    x = np.random.default_rng(0).standard_normal(SHAPE).astype("float32")
    ref = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    np.testing.assert_allclose(_tvm(res.library, x), ref, atol=1e-5)
    untuned = compile_onnx(model, spec, tmp_path / "plain.so", tuning_dir=tmp_path / "empty", keep_tuned=check)
    assert len(seen) == 1 and not untuned.tuned and untuned.tuned_check == ""  # nothing to check without records
    # builds are deterministic: the shipped file is byte for byte the one a plain compile makes
    plain = compile_onnx(model, spec, tmp_path / "tuned.so", tuning_dir=db_dir).library
    expected = plain if keep else untuned.library
    assert Path(res.library).read_bytes() == Path(expected).read_bytes()


def test_build_leaves_the_callers_module_unscheduled(tmp_path):
    """``build.build`` schedules a module of its own: the default rules used to mark the caller's
    kernels scheduled, so a second build of it (the tuned library's check) applied no record."""
    import tvm

    from edgenas.compile import build

    spec = get_target("x86-avx2")
    fused = pipeline.fuse(frontend.import_onnx(_conv_onnx(tmp_path / "conv.onnx", 8)), spec)

    def scheduled(mod):
        return sorted(gv.name_hint for gv, f in mod.functions.items()
                      if isinstance(f, tvm.tirx.PrimFunc) and f.attrs.get("tirx.is_scheduled", False))

    before = scheduled(fused)
    build.build(fused, spec, tmp_path / "a.so")
    assert scheduled(fused) == before


def test_the_checker_times_two_real_libraries_interleaved(tmp_path):
    """``measure.tuned_check.checker`` on a real pair: a library against itself is not slower
    than itself by much, and the verdict names the thread count and the interval."""
    from edgenas.measure.tuned_check import checker, deploy_threads

    spec = get_target("x86-avx2")
    model = _conv_onnx(tmp_path / "conv.onnx", 8)
    a = compile_onnx(model, spec, tmp_path / "a.so", tuning_dir=tmp_path / "empty").library
    b = compile_onnx(model, spec, tmp_path / "b.so", tuning_dir=tmp_path / "empty").library
    keep, why = checker(SHAPE, spec)(Path(a), Path(b))
    assert isinstance(keep, bool) and f"at {deploy_threads(spec)} thread(s)" in why and "95 % interval" in why
    ratio = float(why.split("x the default")[0].rsplit(" ", 1)[-1])
    assert 0.5 < ratio < 2.0  # the same kernels: a ratio near 1 on any host that is not badly overloaded
