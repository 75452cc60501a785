"""Small quantized CNNs exported the two ways the compile stage meets them.

The float network is the shape the issue names: conv3x3 -> BN -> ReLU -> depthwise conv ->
ReLU6 -> 1x1 conv -> residual add -> global average pool -> Linear. It is quantized (a) by
onnxruntime ``quantize_static`` to QDQ (per-channel int8 weights, uint8 activations with zero
points) and (b) by brevitas QAT layers exported as QCDQ (int8 weights through Clip, int32 bias,
BatchNormalization kept after the conv). Both are built once per session, at 16x16 input, so
the whole compile test file stays well under a minute on two cores.
"""

from __future__ import annotations

import warnings

import pytest

SHAPE = (1, 3, 16, 16)


def _float_cnn():
    import torch
    from torch import nn

    class CNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
            self.bn = nn.BatchNorm2d(16)
            self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
            self.pw = nn.Conv2d(16, 16, 1)
            self.fc = nn.Linear(16, 10)

        def forward(self, x):
            y = torch.relu(self.bn(self.c1(x)))
            z = self.pw(torch.clamp(self.dw(y), 0, 6)) + y
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(z, 1), 1))

    torch.manual_seed(0)
    model = CNN().eval()
    with torch.no_grad():  # non-trivial BN statistics, so folding them is actually tested
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
        model.bn.weight.uniform_(0.5, 1.5)
    return model


def _qat_cnn():
    import brevitas.nn as qnn
    import torch
    from brevitas.quant import Int8ActPerTensorFloat, Int8WeightPerChannelFloat, Int32Bias, Uint8ActPerTensorFloat
    from torch import nn

    class QCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat, return_quant_tensor=True)
            self.c1 = qnn.QuantConv2d(3, 16, 3, padding=1, bias=False, weight_quant=Int8WeightPerChannelFloat)
            self.bn = nn.BatchNorm2d(16)
            self.r1 = qnn.QuantReLU(act_quant=Uint8ActPerTensorFloat, return_quant_tensor=True)
            self.dw = qnn.QuantConv2d(16, 16, 3, padding=1, groups=16, bias_quant=Int32Bias)
            self.q6 = qnn.QuantIdentity(act_quant=Uint8ActPerTensorFloat, return_quant_tensor=True)
            self.pw = qnn.QuantConv2d(16, 16, 1, bias_quant=Int32Bias)
            self.qadd = qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat, return_quant_tensor=True)
            self.qfc = qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat, return_quant_tensor=True)
            self.fc = qnn.QuantLinear(16, 10, bias=True, weight_quant=Int8WeightPerChannelFloat,
                                      bias_quant=Int32Bias, output_quant=Int8ActPerTensorFloat)

        def forward(self, x):
            y = self.r1(self.bn(self.c1(self.inp(x))))
            z = self.qadd(self.pw(self.q6(torch.clamp(self.dw(y), 0, 6))) + y.value)
            return self.fc(self.qfc(torch.flatten(nn.functional.adaptive_avg_pool2d(z, 1), 1)))

    torch.manual_seed(0)
    model = QCNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(10):  # a few QAT steps: calibrates activation scales, moves BN statistics
        loss = model(torch.randn(8, *SHAPE[1:])).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _strip_initializer_inputs(path) -> None:
    """The TorchScript exporter lists initializers as graph inputs; onnxruntime then treats them
    as non-constant and does not fuse QDQ into int8 kernels (docs/tvm.md §1)."""
    import onnx

    model = onnx.load(str(path))
    inits = {i.name for i in model.graph.initializer}
    keep = [i for i in model.graph.input if i.name not in inits]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    onnx.save(model, str(path))


@pytest.fixture(scope="session")
def ort_qdq_onnx(tmp_path_factory):
    """Path of the float CNN quantized by onnxruntime ``quantize_static`` (QDQ, per-channel)."""
    import torch

    from edgenas.quantize.ort_static import quantize_static_onnx

    d = tmp_path_factory.mktemp("ort_qdq")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_float_cnn(), (torch.randn(*SHAPE),), str(d / "f.onnx"), opset_version=17,
                          dynamo=False, input_names=["input"], output_names=["logits"])
    return quantize_static_onnx(d / "f.onnx", d / "qdq.onnx", SHAPE)


@pytest.fixture(scope="session")
def brevitas_qcdq_onnx(tmp_path_factory):
    """Path of the brevitas QAT twin of the CNN, exported QCDQ with the TorchScript exporter."""
    import torch
    from brevitas.export import export_onnx_qcdq

    path = tmp_path_factory.mktemp("brevitas") / "qcdq.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx_qcdq(_qat_cnn(), args=torch.randn(*SHAPE), export_path=str(path), dynamo=False,
                         opset_version=17, input_names=["input"], output_names=["logits"])
    _strip_initializer_inputs(path)
    return path
