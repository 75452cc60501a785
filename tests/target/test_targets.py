"""Every target file loads and resolves to a TVM target; malformed files fail naming file and field."""

import pytest

from edgenas.errors import ConfigError, UsageError
from edgenas.target import get_target, list_targets, load_target_file

REQUIRED = {"x86-avx2", "x86-avx512-vnni", "x86-avx-vnni", "rpi4", "rpi5", "jetson-orin", "cuda-sm80", "cuda-sm90"}


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


VALID = "name = 'x'\ndescription='d'\narch='x86_64'\n[tvm.target]\nkind='llvm'\n[runner]\nkind='local'\n[int8]\ndot_product='avx2'\n"


@pytest.mark.parametrize("name", list_targets())
def test_every_target_searches_int8_by_default(name):
    assert get_target(name).search_bits == (8,)


def test_search_bits_are_parsed_sorted_and_optional(tmp_path):
    p = tmp_path / "t.toml"
    p.write_text(VALID + "[search]\nbits = [8, 4]\n")
    assert load_target_file(p).search_bits == (4, 8)
    p.write_text(VALID)                                    # a target file without [search]: INT8 only
    assert load_target_file(p).search_bits == (8,)


@pytest.mark.parametrize("value", ["[]", "[16]", "[1, 8]", "[8, 8]", "['8']", "[true]", "[4.0]"])
def test_bad_search_bits_name_file_field_and_fix(tmp_path, value):
    p = tmp_path / "t.toml"
    p.write_text(VALID + f"[search]\nbits = {value}\n")
    with pytest.raises(ConfigError) as e:
        load_target_file(p)
    msg = str(e.value)
    assert str(p) in msg and "search.bits" in msg and "between 2 and 8" in msg and "\n" not in msg


@pytest.mark.parametrize("text, field", [("[search]\nbits = 8\n", "search.bits"), ("[search]\nbit = [8]\n", "search.bit")])
def test_search_table_is_checked_like_the_others(tmp_path, text, field):
    p = tmp_path / "t.toml"
    p.write_text(VALID + text)
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_target_file(p)


RPC = VALID.replace("kind='local'", "kind='rpc'\nrpc_key='k'\nlocal_if_cpu_has = {flags}")


def test_device_target_is_measured_here_when_this_cpu_has_its_isa(tmp_path):
    """``[runner] local_if_cpu_has``: an RPC target whose ISA this host has is tuned and measured
    locally (x86-avx512-vnni on a VNNI host); a flag the host lacks keeps it on the farm."""
    import platform

    from edgenas.target import host_cpu_flags

    have = sorted(host_cpu_flags())[:2]
    p = tmp_path / "t.toml"
    p.write_text(RPC.format(flags=repr(have)))
    assert load_target_file(p).measurable_locally == (bool(have) and platform.machine() == "x86_64")
    p.write_text(RPC.format(flags=repr(have + ["no_such_flag"])))
    assert not load_target_file(p).measurable_locally
    p.write_text(RPC.format(flags="['']"))
    with pytest.raises(ConfigError, match="runner.local_if_cpu_has"):
        load_target_file(p)


def test_x86_avx_vnni_is_measured_here_only_on_an_avx_vnni_cpu():
    """x86-avx-vnni (alderlake: AVX-VNNI without AVX-512) is a farm target with the 256-bit
    ``vpdpbusd`` kernel; a host with AVX-VNNI tunes and measures it locally. An AVX-512 VNNI host
    without AVX-VNNI does not: the VEX-encoded instruction would fault there."""
    import platform

    from edgenas.target import INT8_DOT, host_cpu_flags

    spec = get_target("x86-avx-vnni")
    assert (spec.int8_dot, spec.runner, spec.rpc_key, spec.tvm_target["mcpu"]) == \
           ("avxvnni", "rpc", "x86-avx-vnni", "alderlake") and "avxvnni" in INT8_DOT
    assert spec.measurable_locally == ("avx_vnni" in host_cpu_flags() and platform.machine() == "x86_64")


def test_weight_bits_default_to_8_and_x86_avx2_asks_for_7(tmp_path):
    """``[int8] weight_bits``: optional (8); x86-avx2 trains 7-bit weights (vpmaddubsw pair sums
    exact), every other target keeps full int8 weights."""
    p = tmp_path / "t.toml"
    p.write_text(VALID)
    assert load_target_file(p).int8_weight_bits == 8
    p.write_text(VALID + "weight_bits = 4\n")              # VALID ends inside [int8]
    assert load_target_file(p).int8_weight_bits == 4
    assert {n: get_target(n).int8_weight_bits for n in list_targets() if n in REQUIRED} == \
           {n: 7 if n == "x86-avx2" else 8 for n in REQUIRED}


@pytest.mark.parametrize("value", ["1", "9", "16", "0", "-8", "true", "'7'", "7.0", "[7]"])
def test_bad_weight_bits_name_file_and_field(tmp_path, value):
    p = tmp_path / "t.toml"
    p.write_text(VALID + f"weight_bits = {value}\n")
    with pytest.raises(ConfigError) as e:
        load_target_file(p)
    msg = str(e.value)
    assert str(p) in msg and "int8.weight_bits" in msg and "\n" not in msg
