"""Every target file loads and resolves to a TVM target; malformed files fail naming file and field."""

import pytest

from edgenas.errors import ConfigError, UsageError
from edgenas.target import get_target, list_targets, load_target_file

REQUIRED = {"x86-avx2", "x86-avx512-vnni", "rpi4", "rpi5", "jetson-orin", "cuda-sm80"}


def test_required_targets_exist():
    assert REQUIRED <= set(list_targets())


@pytest.mark.parametrize("name", list_targets())
def test_target_loads_and_resolves(name):
    spec = get_target(name)
    assert spec.name == name
    tvm_target = spec.tvm()
    assert tvm_target.kind.name == spec.tvm_target["kind"]
    if spec.arch == "aarch64":
        host = tvm_target.host or tvm_target
        assert "aarch64" in str(host.attrs.get("mtriple", ""))


def test_unknown_target_lists_valid_ones():
    with pytest.raises(UsageError) as e:
        get_target("pi-zero")
    assert "x86-avx2" in str(e.value) and "rpi4" in str(e.value)


@pytest.mark.parametrize(
    "text, field",
    [
        ("name = 'x'\ndescription='d'\narch='x86_64'\n[tvm.target]\nkind='vulkan'\n[runner]\nkind='local'\n[int8]\ndot_product='avx2'\n", "tvm.target.kind"),
        ("name = 'x'\ndescription='d'\narch='x86_64'\ncolour='red'\n", "colour"),
        ("name = 'x'\ndescription='d'\narch='x86_64'\n[tvm.target]\nkind='llvm'\n[runner]\nkind='rpc'\n[int8]\ndot_product='avx2'\n", "runner.rpc_key"),
        ("name = 'x'\ndescription=3\n", "description"),
        ("name = 'x\n", None),
    ],
)
def test_malformed_target_names_file_and_field(tmp_path, text, field):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_target_file(p)
    msg = str(e.value)
    assert str(p) in msg and "\n" not in msg
    if field:
        assert field in msg
