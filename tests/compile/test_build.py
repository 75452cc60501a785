"""compile_onnx for the local x86 target: the library runs and matches onnxruntime, and every
bad input or host problem is one UsageError line raised before any tuning or writing."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

from edgenas.compile import compile_onnx
from edgenas.errors import UsageError
from edgenas.target import get_target

SHAPE = (1, 3, 16, 16)


def _export_float(path, dynamic_batch: bool = False):
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)).eval()
    axes = {"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(*SHAPE),), str(path), opset_version=17, dynamo=False,
                          input_names=["input"], output_names=["logits"], dynamic_axes=axes)
    return path


@pytest.fixture(scope="module")
def float_onnx(tmp_path_factory):
    return _export_float(tmp_path_factory.mktemp("float") / "f.onnx")


def _ort(path, x, optimize=True):
    import onnxruntime as ort

    so = ort.SessionOptions()
    if not optimize:  # Q/DQ evaluated as written (the float-simulation reference)
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, {sess.get_inputs()[0].name: x[i:i + 1]})[0] for i in range(len(x))])


def _tvm(lib, x):
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(tvm.runtime.load_module(str(lib)), tvm.cpu())
    return np.concatenate([vm["main"](tvm.runtime.tensor(x[i:i + 1])).numpy() for i in range(len(x))])


def _inputs(n=4):
    return np.random.default_rng(0).standard_normal((n, *SHAPE[1:])).astype("float32")


def test_x86_float_library_matches_onnxruntime(float_onnx, tmp_path):
    res = compile_onnx(float_onnx, get_target("x86-avx2"), tmp_path / "f.so", int8=False,
                       tuning_dir=tmp_path / "tl")
    assert (res.trials, res.tuned, res.db_records, res.int8_ops) == (0, False, 0, {})
    assert not (tmp_path / "tl").exists()  # an untuned compile reads the DB, never creates it
    x = _inputs()
    np.testing.assert_allclose(_tvm(res.library, x), _ort(float_onnx, x), atol=1e-5)


def test_x86_int8_library_matches_onnxruntime(ort_qdq_onnx, tmp_path):
    res = compile_onnx(ort_qdq_onnx, get_target("x86-avx2"), tmp_path / "q.so", tuning_dir=tmp_path / "tl")
    assert sum(res.int8_ops.values()) >= 3, res  # conv, depthwise, pointwise, dense folded
    x = _inputs()
    ref = _ort(ort_qdq_onnx, x, optimize=False)
    err = np.abs(_tvm(res.library, x) - ref).max()
    assert err <= 1e-3 * np.abs(ref).max(), err


def _truncated(tmp_path, float_onnx):
    data = float_onnx.read_bytes()
    p = tmp_path / "truncated.onnx"
    p.write_bytes(data[: len(data) // 2])
    return p


def _not_onnx(tmp_path, _float_onnx):
    p = tmp_path / "notes.onnx"
    p.write_text("this is not a protobuf\n")
    return p


def _unsupported_op(tmp_path, _float_onnx):
    import onnx
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 3, 3], np.ones(108, "float32").tolist())
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Celu", ["c"], ["logits"])], "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(SHAPE))],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4, 16, 16])], [w])
    p = tmp_path / "celu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(p))
    return p


def _dynamic(tmp_path, _float_onnx):
    return _export_float(tmp_path / "dynamic.onnx", dynamic_batch=True)


def _missing(tmp_path, _float_onnx):
    return tmp_path / "nowhere.onnx"


@pytest.mark.parametrize("make, words", [
    (_missing, "no such ONNX file"),
    (_truncated, "not a valid ONNX model"),
    (_not_onnx, "not a valid ONNX model"),
    (_unsupported_op, "does not support: Celu"),
    (_dynamic, "dynamic shape"),
])
def test_bad_onnx_fails_before_tuning(make, words, float_onnx, tmp_path):
    path = make(tmp_path, float_onnx)
    with pytest.raises(UsageError) as err:
        compile_onnx(path, get_target("x86-avx2"), tmp_path / "out.so", trials=16, tuning_dir=tmp_path / "tl")
    assert words in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "tl").exists() and not (tmp_path / "out.so").exists()


def test_missing_cross_compiler_fails_before_any_work(float_onnx, tmp_path):
    spec = dataclasses.replace(get_target("rpi4"), cross_compiler="aarch64-nonexistent-linux-g++")
    with pytest.raises(UsageError) as err:
        compile_onnx(float_onnx, spec, tmp_path / "out.so", tuning_dir=tmp_path / "tl")
    assert "aarch64-nonexistent-linux-g++" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "tl").exists() and not (tmp_path / "out.so").exists()


def test_tuning_a_remote_target_here_is_refused(float_onnx, tmp_path):
    with pytest.raises(UsageError, match="cannot be measured on this host"):
        compile_onnx(float_onnx, get_target("cuda-sm80"), tmp_path / "out.so", trials=8, tuning_dir=tmp_path / "tl")
    assert not (tmp_path / "tl").exists()
