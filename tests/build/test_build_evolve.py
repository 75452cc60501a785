"""``build --space evolve``: SpaceEvo picks the space (profiled on the target), the rounds search
inside it, and the run directory keeps the stage tables and the evolved space."""

from __future__ import annotations

import dataclasses


from edgenas import records
from edgenas.latency.table import LatencyTable
from edgenas.build import build
from edgenas.build.config import BuildConfig
from edgenas.search.darts import SearchConfig
from edgenas.space.arch import Arch, SpaceConfig
from edgenas.search.evolve import EvolveConfig
from edgenas.space.ops import BLOCK_TYPES
from edgenas.target import get_target

TINY_EVOLVE = EvolveConfig(blocks=("mb", "dw"), n_widths=2, n_samples=2000, top_k=20, population=8, sample_size=4,
                           cycles=20, teacher_epochs=1, kd_epochs=1)


def test_build_with_evolved_space(tmp_path, tiny_recipe):
    out = tmp_path / "run"
    cfg = BuildConfig(out=str(out), rounds=1, recipe=str(tiny_recipe), final_epochs=2, sampled_per_round=1, heldout=2,
                      space_mode="evolve", evolve=TINY_EVOLVE,
                      space=dataclasses.replace(SpaceConfig(), image_size=8),
                      search=SearchConfig(epochs=3, warmup=1, batch=32))
    manifest = build(cfg, get_target(cfg.target))

    space = records.load(out / "space.json", SpaceConfig)
    table = records.load(out / "op_table.json", LatencyTable)
    arch = records.load(out / "arch.json", Arch)
    # the evolved space uses one of the evolved block families per stage, and the rounds searched it
    families = {op for b in TINY_EVOLVE.blocks for op in BLOCK_TYPES[b]}
    assert all(op in families or op == "skip" for st in space.stages for op in st.ops)
    assert {layer.op for layer in arch.layers} <= {op for st in space.stages for op in st.ops}
    assert not table.missing(space)               # every op of the evolved space was profiled on the target
    assert (out / "stage_tables.json").is_file()
    assert manifest.accuracy["int8_tvm"] > 0.5 and manifest.latency["median_ms"] > 0
