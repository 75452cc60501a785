"""Records round-trip through JSON and refuse unknown types; arch strings parse back exactly."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgenas import records
from edgenas.errors import UsageError
from edgenas.space.arch import Arch, LayerChoice, SpaceConfig, arch_from_choices


def _archs():
    space = SpaceConfig()

    @st.composite
    def build(draw):
        choices = [draw(st.sampled_from(space.candidates(i))) for i in range(len(space.positions()))]
        arch = arch_from_choices(space, choices)
        bits = draw(st.sampled_from([4, 8]))
        return arch.with_layers(LayerChoice(lc.op, lc.cout, lc.stride, bits, bits) for lc in arch.layers)

    return build()


@settings(max_examples=60, deadline=None)
@given(_archs())
def test_arch_string_round_trip(arch):
    assert Arch.parse(str(arch)) == arch


@settings(max_examples=60, deadline=None)
@given(_archs())
def test_arch_record_round_trip(arch):
    import json

    assert records.from_dict(json.loads(json.dumps(records.to_dict(arch))), Arch) == arch


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=80))
def test_arch_parser_rejects_garbage_with_usage_error(text):
    try:
        Arch.parse(text)
    except UsageError:
        pass


def test_unknown_record_type_is_refused():
    with pytest.raises(UsageError, match="unknown record type"):
        records.from_dict({"type": "os.system", "version": 1, "data": {}})


def test_wrong_record_type_is_refused():
    arch = Arch.parse("r16_i1_stem16|mb_k3_e3_c24_s2|head64_n10")
    d = records.to_dict(arch)
    with pytest.raises(UsageError, match="expected"):
        records.from_dict(d, SpaceConfig)
