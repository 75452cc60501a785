"""The build configuration and the named presets of search policy.

``BuildConfig`` is what ``state.json`` records and ``--resume`` compares, so it holds plain values
(the target as the user named it, the recipe name). The *policy* — which method terms a search
turns on for a set of bit widths or sparse ops, how strongly, and how big SpaceEvo's evolution is
— lives here as named presets, so that ``edgenas build``, ``scripts/bench_search.py`` and the
tests all read the same numbers (docs/methods.md gives the formulas and the papers).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..errors import UsageError
from ..records import record
from ..registry import Registry
from ..search.darts import SearchConfig
from ..search.evolve import EvolveConfig
from ..space.arch import SpaceConfig

SPACE_MODES = ("default", "evolve")
SELECTIONS = ("argmax", "pt")


@dataclass(frozen=True)
class Policy:
    """The method terms of one search policy (docs/methods.md §1-2): QuantNAS noise per candidate
    width with its entropy and BitOps terms, and DASS's sparse ops with their weights-kept term."""

    noise: str = "none"
    entropy_weight: float = 0.0
    bitops_weight: float = 0.0
    sparsity_weight: float = 0.0
    sparse_levels: tuple[float, ...] = ()


POLICIES: Registry[Policy] = Registry("search policy")
POLICIES.register("int8", Policy())
POLICIES.register("mixed", Policy(noise="gauss", entropy_weight=1e-2, bitops_weight=1e-2))   # several --bits
POLICIES.register("sparse", Policy(sparsity_weight=0.2, sparse_levels=(0.75,)))               # --sparse

# SpaceEvo at the sizes measured on digits: "build" is what ``edgenas build --space evolve`` runs
# (bench_search: ~2 min on 2 cores at 8x8; the four INT8-friendly block families, 3 width windows
# per stage, 20k subnets per Q-T score); "quick" is the smallest evolution that still exercises
# every step (bench_search --quick, tests).
EVOLVE_PRESETS: Registry[EvolveConfig] = Registry("SpaceEvo preset")
EVOLVE_PRESETS.register("build", EvolveConfig(blocks=("mb", "fmb", "dw", "mbh"), n_samples=20_000, cycles=300))
EVOLVE_PRESETS.register("quick", EvolveConfig(blocks=("mb", "dw"), n_widths=2, n_samples=2000, top_k=20, population=8,
                                              sample_size=4, cycles=30, teacher_epochs=2, kd_epochs=1))
BUILD_EVOLVE = EVOLVE_PRESETS.get("build")


def search_policy(bits: tuple[int, ...], sparse: bool) -> Policy:
    """The preset for a bit set and the sparse switch: "mixed" when several widths are searched,
    plus "sparse"'s terms with ``sparse``."""
    base = POLICIES.get("mixed" if len(bits) > 1 else "int8")
    if not sparse:
        return base
    sp = POLICIES.get("sparse")
    return dataclasses.replace(base, sparsity_weight=sp.sparsity_weight, sparse_levels=sp.sparse_levels)


def search_config(epochs: int, policy: Policy, selection: str = "argmax") -> SearchConfig:
    """A DARTS configuration: ``epochs`` with the usual 3-epoch weight warm-up (shorter searches
    warm up for all but their last epoch) and the policy's terms."""
    if selection not in SELECTIONS:
        raise UsageError(f"--selection {selection!r}: choose {' or '.join(SELECTIONS)}")
    return SearchConfig(epochs=epochs, warmup=min(3, max(0, epochs - 1)), selection=selection, noise=policy.noise,
                        entropy_weight=policy.entropy_weight, bitops_weight=policy.bitops_weight,
                        sparsity_weight=policy.sparsity_weight)


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
    final_subsample: int = 4000       # weight-split images final training and QAT see (+ half as many alpha images; 0: all)
    sampled_per_round: int = 15       # extra architectures measured per round to fit the predictor (16 with the chosen one; docs/latency.md)
    heldout: int = 6                  # architectures measured once, never fitted: the predictor's error is shown on them
    reuse_latency: bool = False       # fit round 1's predictor on measurements kept from earlier runs
    strategy: str = "darts"           # darts | random (edgenas.search.strategies)
    space_mode: str = "default"       # default: search `space` | evolve: SpaceEvo picks the space first
    space: SpaceConfig = field(default_factory=SpaceConfig)
    evolve: EvolveConfig = BUILD_EVOLVE
    search: SearchConfig = field(default_factory=SearchConfig)

    @classmethod
    def from_options(cls, *, bits: tuple[int, ...], sparse: bool, selection: str, search_epochs: int, image_size: int,
                     **plain) -> "BuildConfig":
        """The configuration of ``edgenas build``'s options: ``bits``/``sparse`` pick the policy
        preset, the other options are copied as they are (``plain``: the dataclass's own fields)."""
        policy = search_policy(bits, sparse)
        space = dataclasses.replace(SpaceConfig(), image_size=image_size, bits=bits, sparse_levels=policy.sparse_levels)
        return cls(space=space, search=search_config(search_epochs, policy, selection), **plain)

    def validate(self) -> None:
        if self.rounds < 1:
            raise UsageError(f"--rounds must be at least 1 (got {self.rounds})")
        if self.latency_budget_ms is not None and self.latency_budget_ms <= 0:
            raise UsageError(f"--latency-budget must be positive (got {self.latency_budget_ms} ms)")
        if self.trials < 0 or self.final_epochs < 1 or self.sampled_per_round < 0 or self.heldout < 0:
            raise UsageError("--trials, --samples and --heldout must be >= 0 and --epochs >= 1")
        from ..search.strategies import STRATEGIES

        STRATEGIES.get(self.strategy)
        if self.space_mode not in SPACE_MODES:
            raise UsageError(f"--space {self.space_mode!r}: choose from {', '.join(SPACE_MODES)}")
        if self.search.epochs < 1 or not 0 <= self.search.warmup < self.search.epochs:
            raise UsageError("search epochs must be >= 1 and warm-up shorter than the search")

