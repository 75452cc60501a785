"""SpaceEvo: search the search space itself, scored by the Q-T score, with aging evolution.

Wang, Zhang, Xu et al., "SpaceEvo: Hardware-Friendly Search Space Design for Efficient INT8
Inference", ICCV 2023 (arXiv 2303.08308; code ``microsoft/Moonlit/SpaceEvo``,
``modules/block_kd/search/searcher.py``).

A candidate space picks, per stage, a block type (``ops.BLOCK_TYPES``) and a window of
INT8-friendly widths (a contiguous slice of that stage's width list). Its quality at latency
target T is the Q-T score, computed from the per-stage tables of ``stage_tables`` alone (no
forward passes, so evolution runs in seconds on a CPU):

1. sample N subnets, one table row per stage from the rows the space allows;
2. loss = sum of the stages' NSR, latency = sum of the stages' latencies + fixed (stem, head);
3. p = fraction of subnets with latency <= T;  L_acc = mean of the top_k lowest losses among them;
4. L_lat = max(1, (t / p)^a);  score = 1 / (L_lat * L_acc)  (0 if no subnet meets T).

Aging (regularised) evolution: the population is seeded with every uniform space (the same block
type and window index in every stage), topped up with random spaces; each cycle samples
``sample_size`` members, and the best makes two children, one with a stage's block type mutated,
one with a stage's window mutated; the two oldest members die. (SpaceEvo's ``random_sample()``
overwrites its block choices with a hard-coded list; ours samples for real.)

Our DARTS supernet does not search widths (no channel masking), so the winning space becomes a
``SpaceConfig`` whose stage width is the width most frequent among the top_k subnets of the
winner's Q-T sample, and whose stage ops are the block family (+ skip where it is valid).
"""

from __future__ import annotations

import dataclasses
import zlib
from collections import Counter, deque
from dataclasses import dataclass

import numpy as np

from ..records import record
from ..space.arch import SpaceConfig, StageConfig
from ..space.ops import BLOCK_TYPES
from .stage_tables import StageTables, build_stage_tables, default_widths

Candidate = tuple[tuple[int, int], ...]   # per stage: (block index, window index)


@record("evolve_config")
@dataclass(frozen=True)
class EvolveConfig:
    blocks: tuple[str, ...] = ("mb", "fmb", "dw", "mbh")
    widths: tuple[tuple[int, ...], ...] = ()  # per stage; () = default_widths(base, n_widths)
    n_widths: int = 3
    window: int = 2
    variants: int = 1          # ops per block type measured in the tables (the family's first ones)
    t: float = 0.08            # SpaceEvo README (CLI default 0.1)
    a: float = 0.01
    top_k: int = 50
    n_samples: int = 100_000
    population: int = 64
    sample_size: int = 16
    cycles: int = 300
    teacher_epochs: int = 8
    kd_epochs: int = 3


def qt_score(losses: np.ndarray, lats: np.ndarray, target_ms: float, t: float, a: float, top_k: int) -> float:
    """Q-T score of a sample of subnets (the formula; ``sample_subnets`` draws the sample)."""
    ok = lats <= target_ms
    p = float(ok.mean()) if len(lats) else 0.0
    if p == 0.0:
        return 0.0
    l_acc = float(np.sort(losses[ok])[:top_k].mean())
    l_lat = max(1.0, (t / p) ** a)
    return 1.0 / (l_lat * l_acc)


class SpaceScorer:
    """Q-T scores of candidate spaces from per-stage tables (memoised per candidate)."""

    def __init__(self, tables: StageTables, cfg: EvolveConfig, widths: tuple[tuple[int, ...], ...], target_ms: float,
                 seed: int = 0):
        self.cfg, self.widths, self.target_ms, self.seed = cfg, widths, target_ms, seed
        self.fixed = tables.fixed_ms
        self.rows = tables.rows
        self.n_windows = [len(ws) - cfg.window + 1 for ws in widths]
        if min(self.n_windows) < 1:
            raise ValueError(f"window {cfg.window} is wider than a stage's width list {widths}")
        self._cache: dict[Candidate, float] = {}

    def allowed(self, cand: Candidate) -> list[list[int]]:
        """Per stage, indices of the table rows the candidate space allows."""
        out = []
        for s, (b, w) in enumerate(cand):
            window = set(self.widths[s][w : w + self.cfg.window])
            out.append([i for i, r in enumerate(self.rows)
                        if r.stage == s and r.block == self.cfg.blocks[b] and r.width in window])
        return out

    def sample(self, cand: Candidate) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(losses, latencies, row indices [n, stages])`` of N subnets of the candidate."""
        rng = np.random.default_rng(self.seed + zlib.crc32(repr(cand).encode()))
        picks = np.stack([rng.choice(np.asarray(ix), self.cfg.n_samples) for ix in self.allowed(cand)], axis=1)
        nsr = np.array([r.nsr for r in self.rows])
        lat = np.array([r.latency_ms for r in self.rows])
        return nsr[picks].sum(1), lat[picks].sum(1) + self.fixed, picks

    def score(self, cand: Candidate) -> float:
        if cand not in self._cache:
            losses, lats, _ = self.sample(cand)
            self._cache[cand] = qt_score(losses, lats, self.target_ms, self.cfg.t, self.cfg.a, self.cfg.top_k)
        return self._cache[cand]


@record("evolve_result")
@dataclass(frozen=True)
class EvolveResult:
    best: tuple[tuple[int, int], ...]
    score: float
    space: SpaceConfig
    evaluated: int
    history: tuple[float, ...]    # best score after each cycle


def aging_evolution(scorer: SpaceScorer, seed: int) -> tuple[Candidate, float, list[float]]:
    cfg, rng = scorer.cfg, np.random.default_rng(seed)
    n_stages, n_blocks = len(scorer.widths), len(cfg.blocks)

    def random_cand() -> Candidate:
        return tuple((int(rng.integers(n_blocks)), int(rng.integers(scorer.n_windows[s]))) for s in range(n_stages))

    def mutate(c: Candidate, which: int) -> Candidate:
        s = int(rng.integers(n_stages))
        b, w = c[s]
        if which == 0:
            b = int(rng.choice([x for x in range(n_blocks) if x != b])) if n_blocks > 1 else b
        else:
            w = int(rng.choice([x for x in range(scorer.n_windows[s]) if x != w])) if scorer.n_windows[s] > 1 else w
        return c[:s] + ((b, w),) + c[s + 1 :]

    uniform = list(dict.fromkeys(tuple((b, min(w, scorer.n_windows[s] - 1)) for s in range(n_stages))
                                 for b in range(n_blocks) for w in range(max(scorer.n_windows))))
    pop = deque(uniform[: cfg.population])
    while len(pop) < cfg.population:
        pop.append(random_cand())
    best = max(pop, key=scorer.score)
    history = []
    for _ in range(cfg.cycles):
        idx = rng.choice(len(pop), min(cfg.sample_size, len(pop)), replace=False)
        parent = max((pop[i] for i in idx), key=scorer.score)
        for which in (0, 1):
            child = mutate(parent, which)
            pop.append(child)
            pop.popleft()
            if scorer.score(child) > scorer.score(best):
                best = child
        history.append(scorer.score(best))
    return best, scorer.score(best), history


def to_space(base: SpaceConfig, scorer: SpaceScorer, cand: Candidate) -> SpaceConfig:
    """The winning candidate as a search space: modal top-k width per stage, the block's ops + skip."""
    losses, lats, picks = scorer.sample(cand)
    ok = np.flatnonzero(lats <= scorer.target_ms)
    top = ok[np.argsort(losses[ok])[: scorer.cfg.top_k]] if len(ok) else np.argsort(lats)[: scorer.cfg.top_k]
    stages = []
    for s, ((b, _), st) in enumerate(zip(cand, base.stages)):
        width = Counter(scorer.rows[i].width for i in picks[top, s]).most_common(1)[0][0]
        stages.append(StageConfig(width, st.depth, st.stride, ops=BLOCK_TYPES[scorer.cfg.blocks[b]] + ("skip",)))
    return dataclasses.replace(base, stages=tuple(stages))


def evolve_space(base: SpaceConfig, tables: StageTables, cfg: EvolveConfig, widths: tuple[tuple[int, ...], ...],
                 target_ms: float, seed: int = 0) -> EvolveResult:
    scorer = SpaceScorer(tables, cfg, widths, target_ms, seed)
    best, score, history = aging_evolution(scorer, seed)
    return EvolveResult(best, score, to_space(base, scorer, best), len(scorer._cache), tuple(history))


def evolve_for_budget(base: SpaceConfig, data, table, budget_ms: float, cfg: EvolveConfig, latency_of, seed: int = 0,
                      progress=None, compute=None):
    """The whole SpaceEvo step: per-stage tables (KD proxy + latencies measured through
    ``latency_of(space, table)``, normally ``profile_space`` bound to recipe/target/measure), then
    aging evolution at ``budget_ms``. Returns ``(EvolveResult, StageTables, grown LatencyTable)``;
    ``result.space`` is the space to search next; the proxies train on ``compute``."""
    widths = cfg.widths or default_widths(base, cfg.n_widths)
    tables, table = build_stage_tables(base, widths, cfg.blocks, cfg.variants, data, table, latency_of,
                                       cfg.teacher_epochs, cfg.kd_epochs, seed=seed, progress=progress, compute=compute)
    return evolve_space(base, tables, cfg, widths, budget_ms, seed), tables, table
