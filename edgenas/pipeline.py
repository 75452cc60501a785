"""The build: rounds of (latency model -> search -> measure), then train, quantize, compile, measure.

Data flows one way (space -> search -> quantize -> compile -> measure) and the measurements of
each round flow back into the latency predictor the next round searches with. Each stage writes
its outputs atomically into the run directory and is then marked done, so ``resume=True`` picks
up after any interruption; the search and the two trainings also checkpoint every epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import records
from .errors import UsageError
from .progress import Reporter
from .records import record
from .search.darts import SearchConfig
from .space.arch import SpaceConfig
from .space.evolve import EvolveConfig

SPACE_MODES = ("default", "evolve")

# SpaceEvo at the size the bench measured on digits (bench_search: ~2 min on 2 cores, 8x8): the
# four INT8-friendly block families, 3 width windows per stage, 20k subnets per Q-T score.
BUILD_EVOLVE = EvolveConfig(blocks=("mb", "fmb", "dw", "mbh"), n_samples=20_000, cycles=300)


@record("build_config")
@dataclass(frozen=True)
class BuildConfig:
    target: str = "x86-avx2"
    data: str = "digits"
    out: str = "runs/latest"
    rounds: int = 2
    latency_budget_ms: float | None = None
    seed: int = 0
    recipe: str = "int8-per-channel"
    trials: int = 0                   # MetaSchedule trials for the final model (0: reuse tuning_logs only)
    final_epochs: int = 20
    sampled_per_round: int = 2        # extra architectures measured per round to fit the predictor
    reuse_latency: bool = False       # fit round 1's predictor on measurements kept from earlier runs
    strategy: str = "darts"           # darts | random (edgenas.search.strategies)
    space_mode: str = "default"       # default: search `space` | evolve: SpaceEvo picks the space first
    space: SpaceConfig = field(default_factory=SpaceConfig)
    evolve: EvolveConfig = BUILD_EVOLVE
    search: SearchConfig = field(default_factory=SearchConfig)

    def validate(self) -> None:
        if self.rounds < 1:
            raise UsageError(f"--rounds must be at least 1 (got {self.rounds})")
        if self.latency_budget_ms is not None and self.latency_budget_ms <= 0:
            raise UsageError(f"--latency-budget must be positive (got {self.latency_budget_ms} ms)")
        if self.trials < 0 or self.final_epochs < 1 or self.sampled_per_round < 0:
            raise UsageError("--trials and --samples must be >= 0 and --epochs >= 1")
        from .search.strategies import STRATEGIES

        STRATEGIES.get(self.strategy)
        if self.space_mode not in SPACE_MODES:
            raise UsageError(f"--space {self.space_mode!r}: choose from {', '.join(SPACE_MODES)}")
        if self.search.epochs < 1 or not 0 <= self.search.warmup < self.search.epochs:
            raise UsageError("search epochs must be >= 1 and warm-up shorter than the search")


def op_table_path(target_name: str) -> Path:
    from .target import tuning_root

    return tuning_root() / target_name / "op_latency.json"


def build(cfg: BuildConfig, reporter: Reporter | None = None, resume: bool = False, farm=None) -> "records.Manifest":
    """Run (or resume) a whole build; returns the manifest written to ``cfg.out``."""
    from .stages import Build

    cfg.validate()
    return Build(cfg, reporter or Reporter(), resume, farm).run()
