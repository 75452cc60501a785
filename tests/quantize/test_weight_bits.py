"""The target's weight width caps the QAT recipe (``[int8] weight_bits``, 7 on x86-avx2): the
capping function, the per-layer widths ``to_brevitas`` builds, and a QCDQ export at the cap whose
integer weights fit vpmaddubsw's exact range and agree with onnxruntime."""

import dataclasses

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from edgenas.data import load_data
from edgenas.latency.profile import space_modules
from edgenas.quantize.convert import calibrate, to_brevitas
from edgenas.quantize.export import compare, export_int8, run_ort, run_torch
from edgenas.quantize.recipe import QuantRecipe, for_target, get_recipe
from edgenas.space.arch import Arch, SpaceConfig
from edgenas.space.supernet import freeze
from edgenas.target import get_target
from edgenas.train import fit

# one 8-bit and one 4-bit searched layer
ARCH = "r8_i1_stem8|mb_k3_e3_c8_s1_w8a8|mb_k3_e3_c16_s2_w4a8|head32_n10"


def test_for_target_caps_weight_bits():
    avx2, vnni = get_target("x86-avx2"), get_target("x86-avx512-vnni")
    r = get_recipe("int8-per-channel")
    c = for_target(r, avx2)
    assert (c.weight_bits, c.max_weight_bits, c.name) == (7, 7, r.name)
    assert c.capped(8) == 7 and c.capped(7) == 7 and c.capped(4) == 4
    assert for_target(c, avx2) == c                        # idempotent
    assert for_target(r, vnni) == r and r.capped(8) == 8    # an 8-bit target changes nothing
    four = dataclasses.replace(r, weight_bits=4)
    assert for_target(four, avx2).weight_bits == 4          # a 4-bit recipe stays 4 (its layers' cap is 7)
    assert for_target(QuantRecipe("x", max_weight_bits=6), avx2).max_weight_bits == 6   # never widens
    # the latency table's op recipes keep the key's width but the target's cap
    widths = {key: rec.capped(rec.weight_bits) for key, _, rec, _ in space_modules(SpaceConfig(bits=(4, 8)), c)}
    assert {w for k, w in widths.items() if "|w8|" in k} == {7} and {w for k, w in widths.items() if "|w4|" in k} == {4}
    assert widths["stem"] == widths["head"] == 7


def _weight_widths(q: torch.nn.Module) -> dict[str, int]:
    return {name: int(m.weight_quant.bit_width()) for name, m in q.named_modules() if hasattr(m, "weight_quant")}


def test_to_brevitas_caps_per_layer_widths():
    """A layer searched at 8 bits is built at 7 for x86-avx2, a 4-bit one stays 4, and the stem,
    head and classifier (the recipe's width) are 7; for an 8-bit target nothing changes."""
    model = freeze(Arch.parse(ARCH)).eval()
    r = get_recipe("int8-per-channel")
    capped = _weight_widths(to_brevitas(model, for_target(r, get_target("x86-avx2"))))
    plain = _weight_widths(to_brevitas(model, for_target(r, get_target("x86-avx512-vnni"))))
    assert set(capped) == set(plain)
    for name, bits in plain.items():
        assert capped[name] == (4 if bits == 4 else 7), name
    assert sorted(n for n, b in plain.items() if b == 4) == [f"body.layers.1.body.{i}.conv" for i in range(3)]
    assert any(b == 8 for b in plain.values())


def integer_weights(path) -> dict[str, np.ndarray]:
    """The integer weight of every Conv / Gemm of a QCDQ graph, after brevitas' Clip:
    ``DQ(Clip(int8 constant, lo, hi))`` or ``DQ(int8 constant)`` feeding the weight input."""
    g = onnx.load(str(path)).graph
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    producer = {o: n for n in g.node for o in n.output}
    out = {}
    for n in g.node:
        if n.op_type not in ("Conv", "Gemm"):
            continue
        dq = producer[n.input[1]]
        assert dq.op_type == "DequantizeLinear", n.name
        src = dq.input[0]
        lo, hi = -128, 127
        if src in producer and producer[src].op_type == "Clip":
            clip = producer[src]
            src, lo, hi = clip.input[0], int(consts[clip.input[1]]), int(consts[clip.input[2]])
        w = consts[src]
        assert w.dtype == np.int8, n.name
        out[n.name] = np.clip(w.astype(np.int32), lo, hi)
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    data = load_data("digits", 8, seed=0)
    model = freeze(Arch.parse(ARCH))
    fit(model, data.train, epochs=4, lr=3e-3, seed=0)
    recipe = for_target(get_recipe("int8-per-channel"), get_target("x86-avx2"))
    q = calibrate(to_brevitas(model.eval(), recipe), data.train[0])
    fit(q, data.train, epochs=1, lr=recipe.qat_lr, seed=0)
    out = tmp_path_factory.mktemp("w7")
    return data, q.eval(), export_int8(q, torch.from_numpy(data.val[0][:1]), out / "q7.onnx")


def test_7bit_export_weights_fit_vpmaddubsw(exported):
    """brevitas' narrow range at 7 bits is [-63, 63]: inside [-64, 64], so every pair of adjacent
    weights sums to at most 128 in magnitude and u8 x s8 pair sums (255 * 128) fit int16."""
    ws = integer_weights(exported[2])
    assert len(ws) == 9                                     # stem, 2 x 3 MBConv convs, head conv, classifier
    for name, w in ws.items():
        assert -64 <= w.min() and w.max() <= 64, (name, w.min(), w.max())
    assert max(int(np.abs(w).max()) for w in ws.values()) == 63    # the 7-bit range is used, not less
    assert min(int(np.abs(w).max()) for w in ws.values()) == 7     # the 4-bit layer: narrow [-7, 7]


def test_7bit_export_agrees_with_onnxruntime(exported):
    data, q, path = exported
    x = data.test[0]
    ref = run_torch(q, x)
    p = compare("brevitas", ref, "onnxruntime", run_ort(path, x, optimize=False))
    print(f"7-bit weights, brevitas vs onnxruntime: max abs err {p.max_abs_err:.4g}, top-1 agreement {p.top1_agreement:.4f}")
    assert p.top1_agreement >= 0.99
    assert p.max_abs_err <= 0.02 * float(np.ptp(ref))
