"""Timing a bring-your-own model (issue 18, point 6): ``edgenas compile MODEL --compare-ort``
compiles a user's QDQ ONNX, times the library with the measurement protocol and onnxruntime on
the same ONNX in the same run, and prints both and their ratio."""

from __future__ import annotations

import re

from buildkit import run_cli, tiny_qdq_model

MS = r"median (\d+\.\d{4}) ms, 95% CI (\d+\.\d{4})-(\d+\.\d{4}) \(n = (\d+), (\d+) threads"


def test_a_byo_qdq_model_is_timed_against_onnxruntime_with_one_command(tmp_path):
    model = tiny_qdq_model(tmp_path)
    proc = run_cli("compile", str(model), "--target", "x86-avx2", "--out", str(tmp_path / "m.so"), "--compare-ort")
    assert proc.returncode == 0, proc.stderr[-2000:]
    tvm = re.search(r"latency\W+" + MS, proc.stdout)
    ort = re.search(r"latency onnxruntime\W+" + MS, proc.stdout)
    ratio = re.search(r"TVM / onnxruntime\W+(\d+\.\d\d)x \((TVM|onnxruntime) faster", proc.stdout)
    assert tvm and ort and ratio, proc.stdout
    t_ms, o_ms = float(tvm.group(1)), float(ort.group(1))
    assert t_ms > 0 and o_ms > 0 and tvm.group(5) == ort.group(5)            # same thread count on both sides
    assert float(tvm.group(2)) <= t_ms <= float(tvm.group(3)) and int(ort.group(4)) >= 30   # the protocol's interval
    assert abs(float(ratio.group(1)) - t_ms / o_ms) <= 0.01 + 1e-3 * t_ms / o_ms
    assert (ratio.group(2) == "TVM") == (t_ms < o_ms)
