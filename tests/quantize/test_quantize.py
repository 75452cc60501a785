"""QAT with brevitas, QCDQ export, and parity: the int8 ONNX agrees with the brevitas model."""

import numpy as np
import onnx
import pytest
import torch

from edgenas.data import load_data
from edgenas.errors import ConfigError
from edgenas.quantize.convert import calibrate, to_brevitas
from edgenas.quantize.export import compare, export_float, export_int8, run_ort, run_torch
from edgenas.quantize.recipe import get_recipe, list_recipes, load_recipe_file
from edgenas.space.arch import Arch
from edgenas.space.supernet import freeze
from edgenas.train import evaluate, fit

ARCH = "r8_i1_stem8|mb_k3_e3_c8_s1|mb_k5_e6_c16_s2|skip_c16_s1|head32_n10"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.manual_seed(0)
    data = load_data("digits", 8, seed=0)
    model = freeze(Arch.parse(ARCH))
    fit(model, data.train, epochs=10, lr=3e-3, seed=0)
    recipe = get_recipe("int8-per-channel")
    q = calibrate(to_brevitas(model.eval(), recipe), data.train[0])
    fit(q, data.train, epochs=2, lr=recipe.qat_lr, seed=0)
    out = tmp_path_factory.mktemp("q")
    ex = torch.from_numpy(data.val[0][:1])
    return data, model.eval(), q.eval(), export_float(model, ex, out / "f.onnx"), export_int8(q, ex, out / "q.onnx")


def test_int8_onnx_agrees_with_brevitas(trained):
    data, _, q, _, q_onnx = trained
    x = data.test[0]
    p = compare("brevitas", run_torch(q, x), "onnxruntime", run_ort(q_onnx, x, optimize=False))
    print(f"brevitas vs onnxruntime (float QDQ simulation): max abs err {p.max_abs_err:.4g}, top-1 agreement {p.top1_agreement:.4f}")
    logits_range = float(np.ptp(run_torch(q, x)))
    assert p.top1_agreement >= 0.99
    assert p.max_abs_err <= 0.02 * logits_range


def test_float_onnx_matches_torch(trained):
    data, model, _, f_onnx, _ = trained
    p = compare("torch", run_torch(model, data.test[0]), "onnxruntime", run_ort(f_onnx, data.test[0]))
    assert p.max_abs_err < 1e-4 and p.top1_agreement == 1.0


def test_qat_keeps_accuracy(trained):
    data, model, q, _, _ = trained
    fp32, int8 = evaluate(model, *data.test), evaluate(q, *data.test)
    print(f"fp32 {fp32:.4f} int8 {int8:.4f}")
    assert int8 >= fp32 - 0.03


def test_export_is_qcdq_without_batchnorm(trained):
    ops = {n.op_type for n in onnx.load(trained[4]).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    assert "BatchNormalization" not in ops  # BN folded before QAT


def test_recipes_load():
    assert "int8-per-channel" in list_recipes()
    for name in list_recipes():
        assert get_recipe(name).weight_bits in range(2, 9)


@pytest.mark.parametrize("text, field", [("name='r'\n[weights]\nbits=16\n", "weights.bits"),
                                         ("name='r'\n[weights]\ngranularity='per-row'\n", "weights.granularity"),
                                         ("name='r'\n[qat]\nepochs='many'\n", "qat.epochs"),
                                         ("name='r'\nextra=1\n", "extra")])
def test_bad_recipe_names_field(tmp_path, text, field):
    p = tmp_path / "r.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_recipe_file(p)
