"""The fused inverted-residual kernel in the compiler (``fused_block.fuse_blocks``, docs/int8_kernels.md):
a QDQ model with eligible and ineligible MobileNetV2 blocks, compiled for x86-avx512-vnni with
``[int8] fuse_blocks`` on and off. Fused, the eligible blocks are one kernel each, the others stay
three, and the library's outputs equal the unfused library's bit for bit and onnxruntime's within
a quantization step."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pytest

from edgenas.errors import ConfigError
from edgenas.target import get_target

SHAPE = (1, 3, 16, 16)
HAS_VNNI = "avx512_vnni" in Path("/proc/cpuinfo").read_text()


def _model():
    """stem -> block 16 (residual ``x + f(x)``: fused) -> block 16 -> 24 stride 2 (not fused) ->
    block 24 without its residual (not fused) -> block 24 (residual ``f(x) + x``, the other
    operand order; a half group of 8 channels in the projection: fused). The output is that last
    block's, so the comparisons see every value of a fused kernel, not a pooled summary."""
    import torch
    from torch import nn

    def cbr(i, o, k=3, s=1, g=1, act=True):
        return [nn.Conv2d(i, o, k, s, k // 2, groups=g, bias=False), nn.BatchNorm2d(o)] + ([nn.ReLU6()] if act else [])

    class Inverted(nn.Module):
        def __init__(self, i, o, s, residual=True, x_first=True):
            super().__init__()
            self.res, self.x_first = residual and s == 1 and i == o, x_first
            self.body = nn.Sequential(*cbr(i, 6 * i, 1), *cbr(6 * i, 6 * i, 3, s, 6 * i), *cbr(6 * i, o, 1, act=False))

        def forward(self, x):
            if not self.res:
                return self.body(x)
            return x + self.body(x) if self.x_first else self.body(x) + x

    torch.manual_seed(0)
    model = nn.Sequential(*cbr(3, 16), Inverted(16, 16, 1), Inverted(16, 24, 2), Inverted(24, 24, 1, residual=False),
                          Inverted(24, 24, 1, x_first=False)).eval()
    with torch.no_grad():  # non-trivial BN statistics: requantize scales and biases per channel
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module")
def qdq_onnx(tmp_path_factory):
    import torch

    from edgenas.quantize.ort_static import quantize_static_onnx

    d = tmp_path_factory.mktemp("fused_rewrite")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_model(), (torch.randn(*SHAPE),), str(d / "f.onnx"), opset_version=17, dynamo=False,
                          input_names=["input"], output_names=["y"])
    return quantize_static_onnx(d / "f.onnx", d / "qdq.onnx", SHAPE)


def _spec(fuse: bool):
    return dataclasses.replace(get_target("x86-avx512-vnni"), int8_fuse_blocks=fuse)


def _kernels(mod) -> list[str]:
    import tvm

    return sorted(gv.name_hint for gv, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc))


def test_eligible_blocks_fuse_and_the_others_stay(qdq_onnx, caplog):
    from edgenas.compile import fused_block, fused_module

    with caplog.at_level("DEBUG", logger="edgenas.compile.fused_block"):
        fused, report = fused_module(qdq_onnx, _spec(True))
    assert report.fused_blocks == 2  # the two stride-1 blocks with a residual, one in each operand order
    assert sum(n.startswith(fused_block.NAME) for n in _kernels(fused)) == 2
    assert "not fused" in caplog.text  # the other quantizes, each with its reason
    classes = report.kernel_classes()
    assert classes["depthwise"] == 2  # the stride-2 block's and the block without residual's
    unfused, report_off = fused_module(qdq_onnx, _spec(False))
    assert report_off.fused_blocks == 0 and not any(fused_block.NAME in n for n in _kernels(unfused))
    assert report_off.kernel_classes()["depthwise"] == 4


def test_only_the_vnni_kernel_fuses(qdq_onnx):
    from edgenas.compile import fused_module

    assert fused_module(qdq_onnx, get_target("x86-avx2"))[1].fused_blocks == 0


def test_the_switch_is_read_from_the_target_file(tmp_path):
    from edgenas.target import load_target_file

    src = Path(get_target("x86-avx512-vnni").path).read_text()
    assert get_target("x86-avx512-vnni").int8_fuse_blocks
    off = tmp_path / "vnni-unfused.toml"
    off.write_text(src.replace('dot_product = "vnni"', 'dot_product = "vnni"\nfuse_blocks = false'))
    assert not load_target_file(off).int8_fuse_blocks
    off.write_text(src.replace('dot_product = "vnni"', 'dot_product = "vnni"\nfuse_blocks = "no"'))
    with pytest.raises(ConfigError, match="int8.fuse_blocks"):
        load_target_file(off)


def test_scheduled_kernel_is_not_a_tuning_task(qdq_onnx):
    from edgenas.compile import fused_block, fused_module
    from edgenas.compile.tune import tunable_tasks

    spec = _spec(True)
    names = [t.task_name for t in tunable_tasks(fused_module(qdq_onnx, spec)[0], spec.tvm())]
    assert names and not any(fused_block.NAME in n for n in names)


@pytest.mark.skipif(not HAS_VNNI, reason="this CPU has no AVX-512 VNNI")
def test_fused_library_is_bit_exact_and_matches_onnxruntime(qdq_onnx, tmp_path):
    import onnx
    import onnxruntime as ort
    import tvm
    from onnx import numpy_helper
    from tvm import relax

    from edgenas.compile import build, fused_module

    x = np.random.default_rng(0).standard_normal((6, *SHAPE[1:])).astype("float32") * np.float32(1.5)
    out = {}
    for fuse in (True, False):
        lib, skipped = build.build(fused_module(qdq_onnx, _spec(fuse))[0], _spec(fuse), tmp_path / f"{fuse}.so")
        assert not skipped
        vm = relax.VirtualMachine(tvm.runtime.load_module(str(lib)), tvm.cpu())
        out[fuse] = np.concatenate([vm["main"](tvm.runtime.tensor(x[i:i + 1])).numpy() for i in range(len(x))])
    assert np.array_equal(out[True], out[False])
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # Q/DQ as written
    sess = ort.InferenceSession(str(qdq_onnx), so, providers=["CPUExecutionProvider"])
    ref = np.concatenate([sess.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))])
    model = onnx.load(str(qdq_onnx))
    last = next(n for n in reversed(model.graph.node) if n.op_type == "DequantizeLinear" and n.output[0] == "y")
    step = float(next(numpy_helper.to_array(i) for i in model.graph.initializer if i.name == last.input[1]))
    assert np.abs(out[True] - ref).max() <= step * 1.001
