"""Results that cannot be mistaken for good ones: an accuracy near chance, a busy machine."""

from __future__ import annotations

import json
from types import SimpleNamespace

from edgenas.build.manifest import result_warnings


def _manifest(fp32, int8, share=0.0):
    return SimpleNamespace(arch="r8_i1_stem16|skip_c16_s1_w8a8|head64_n10",
                           accuracy={"fp32": fp32, "int8_brevitas": int8, "int8_onnx": int8, "int8_tvm": int8, "n": 359},
                           latency={"median_ms": 0.1, "context": {"load_1min": 3.2, "other_cpu_share": share}})


def test_an_accuracy_near_chance_is_flagged_and_a_learned_one_is_not():
    (w,) = result_warnings(_manifest(0.106, 0.114))
    assert "near chance" in w and "fp32 10.6 %" in w and "10.0 % for 10 classes" in w
    assert result_warnings(_manifest(0.97, 0.96)) == []


def test_busy_measurements_are_counted(tmp_path):
    journal = tmp_path / "measurements.jsonl"
    rows = [{"data": {"stats": {"context": {"other_cpu_share": s}}}} for s in (0.5, 0.0, 0.3)]
    journal.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"data": {"sta')   # a torn last line
    warnings = result_warnings(_manifest(0.97, 0.96, share=0.6), journal)
    assert len(warnings) == 2 and "busy machine (load 3.2" in warnings[0] and warnings[1].startswith("2 of 3 measurements")
