"""Every registered op forwards, freezes into a plain net, converts with to_brevitas and exports QCDQ.

One small net per dense op holds the op at a shape-changing position and each of its sparse
variants at a shape-preserving one, so the registry is covered with one export per family.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from edgenas.quantize.convert import calibrate, to_brevitas
from edgenas.quantize.export import export_int8
from edgenas.space.arch import Arch, SpaceConfig
from edgenas.space.ops import OPS, SPARSE_LEVELS, keep_fraction, list_ops, sparse_name, valid
from edgenas.space.sparse import sparse_layers, weight_sparsity
from edgenas.space.supernet import Supernet, freeze

DENSE = [op for op in list_ops() if "_sp" not in op and op != "skip"]


def test_registry_has_sparse_variant_of_every_conv_op():
    for op in DENSE:
        for level in SPARSE_LEVELS:
            assert sparse_name(op, level) in OPS
            assert keep_fraction(sparse_name(op, level)) == pytest.approx(1 - level / 100)
    assert keep_fraction("mb_k3_e6") == 1.0
    assert not valid("skip", 8, 16, 1) and valid("skip", 8, 8, 1)


@pytest.mark.parametrize("op", DENSE)
def test_op_forwards_freezes_converts_exports(op, recipe, tmp_path):
    layers = [f"{op}_c16_s2_w8a8", "skip_c16_s1"] + [f"{sparse_name(op, lv)}_c16_s1_w4a4" for lv in SPARSE_LEVELS]
    arch = Arch.parse(f"r8_i1_stem8|{'|'.join(layers)}|head16_n10")
    assert str(Arch.parse(str(arch))) == str(arch)
    net = freeze(arch)
    x = torch.randn(4, 1, 8, 8)
    y = net(x)
    assert y.shape == (4, 10) and torch.isfinite(y).all()
    y.sum().backward()
    assert not any(n in str(type(m)) for m in net.modules() for n in ("Mixed", "Supernet"))
    net.eval()
    sparsity = weight_sparsity(net)
    q = calibrate(to_brevitas(net, recipe), np.random.default_rng(0).standard_normal((16, 1, 8, 8)).astype("float32"),
                  batches=1, batch=16)
    path = export_int8(q, x[:1], tmp_path / f"{op}.onnx")
    model = onnx.load(path)
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= {n.op_type for n in model.graph.node}
    # Export keeps the pruned weights as zeros in place.
    zeros = sum(int((numpy_helper.to_array(t) == 0).sum()) for t in model.graph.initializer if t.data_type in (2, 3))
    pruned = sum(int((m.effective_weight() == 0).sum()) for m in sparse_layers(net))
    assert sparsity > 0.3 and zeros >= pruned


def test_supernet_with_every_family_forwards():
    space = SpaceConfig(image_size=8, ops=tuple(DENSE) + ("skip",), bits=(4, 8), sparse_levels=(0.5,))
    net = Supernet(space)
    assert len(net.cells[0].candidates) == 2 * (2 * len(DENSE) + 1)  # layer 0 keeps its shape: skip is valid
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 10)
