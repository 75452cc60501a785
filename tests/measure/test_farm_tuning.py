"""Tuning through the farm (MetaSchedule's RPC runner on the loopback tracker): a server killed
mid-tuning leaves the other to finish and measure; with every server gone the tuning stops with
one line, keeps what it measured, and a rerun (`edgenas compile --tracker`) completes once a
server is back."""

from __future__ import annotations

import subprocess
import threading
import warnings

import numpy as np
import pytest

from buildkit import edgenas_cmd
from edgenas.compile import compile_onnx, tuning_db
from edgenas.errors import EdgenasError
from edgenas.measure.rpc import Farm
from edgenas.quantize.export import run_ort
from edgenas.target import get_target

SHAPE = (1, 3, 16, 16)


@pytest.fixture(scope="module")
def qdq_model(tmp_path_factory):
    """A tiny INT8 QDQ model (conv-relu-conv-relu-pool-linear, onnxruntime ``quantize_static``)."""
    import torch
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from torch import nn

    d = tmp_path_factory.mktemp("farm_qdq")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(*SHAPE),), str(d / "f.onnx"), opset_version=17, dynamo=False,
                          input_names=["input"], output_names=["logits"])

    class Reader(CalibrationDataReader):
        def __init__(self):
            rs = np.random.RandomState(0)
            self.it = iter([{"input": rs.randn(*SHAPE).astype("float32")} for _ in range(8)])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(d / "f.onnx"), str(d / "qdq.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return d / "qdq.onnx"


def _in_thread(fn):
    box: dict = {}

    def work():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - checked by the test
            box["error"] = e

    t = threading.Thread(target=work, daemon=True)
    t.start()
    return t, box


def _busy_while(farm, t, box) -> int:
    """The pid of a server serving a tuning candidate, failing early if the compile ended first."""
    for _ in range(300):
        try:
            return farm.busy_server(timeout_s=1.0)
        except AssertionError:
            assert t.is_alive(), f"the compile ended before any candidate ran: {box}"
    raise AssertionError("no server started a session within 300 s")


def test_tuning_through_the_farm_survives_a_killed_server(loopback_farm, qdq_model, tmp_path):
    loopback_farm.ensure(2)
    farm = Farm(loopback_farm.tracker, loopback_farm.key, timeout_s=20, retries=3)
    spec, db = get_target("x86-avx2"), tmp_path / "tl"
    t, box = _in_thread(lambda: compile_onnx(qdq_model, spec, tmp_path / "m.so", trials=24, tuning_dir=db, farm=farm))
    victim = _busy_while(loopback_farm, t, box)   # a server running a tuning candidate
    loopback_farm.kill(victim)
    t.join(900)
    assert not t.is_alive() and "error" not in box, box.get("error")
    res = box["value"]
    assert res.trials >= 24 and res.failed_runs < res.trials and res.tuned, res
    assert victim not in loopback_farm.server_pids() and len(loopback_farm.server_pids()) == 1
    assert tuning_db.count_records(db) == res.trials
    # measured and run on the survivor, numerically the model onnxruntime runs
    assert farm.measurement(res.library, SHAPE).stats.median_ms > 0
    x = np.random.default_rng(1).standard_normal((4, *SHAPE[1:])).astype("float32")
    ours, ref = farm.run(res.library, x), run_ort(qdq_model, x)
    assert (ours.argmax(1) == ref.argmax(1)).all() and np.abs(ours - ref).max() < 0.25


def test_tuning_stops_in_one_line_when_the_farm_dies_and_a_rerun_completes(loopback_farm, qdq_model, tmp_path):
    loopback_farm.ensure(2)
    farm = Farm(loopback_farm.tracker, loopback_farm.key, timeout_s=3, retries=2)
    spec, logs = get_target("x86-avx2"), tmp_path / "logs"
    db = logs / spec.name
    lib = tmp_path / "m.so"
    t, box = _in_thread(lambda: compile_onnx(qdq_model, spec, lib, trials=64, tuning_dir=db, farm=farm))
    _busy_while(loopback_farm, t, box)
    for pid in loopback_farm.server_pids():
        loopback_farm.kill(pid)
    t.join(600)
    assert not t.is_alive()
    err = box.get("error")
    assert isinstance(err, EdgenasError) and "\n" not in str(err), repr(err)
    assert "tuning stopped after" in str(err) and "device farm" in str(err)
    assert not lib.exists()  # nothing half-built where a library is expected
    kept = tuning_db.count_records(db)

    loopback_farm.ensure(2)
    r = subprocess.run(edgenas_cmd("compile", str(qdq_model), "--target", spec.name, "--out", str(lib),
                                   "--trials", "64", "--tracker", loopback_farm.tracker, "--key", loopback_farm.key),
                       capture_output=True, text=True, timeout=900, env={**_env(), "EDGENAS_TUNING_LOGS": str(logs)})
    assert r.returncode == 0, r.stderr[-2000:]
    assert lib.is_file() and "latency on the farm" in r.stdout and "Traceback" not in r.stderr
    assert tuning_db.count_records(db) > kept


def _env():
    import os

    return dict(os.environ)
