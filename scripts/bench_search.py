#!/usr/bin/env python
"""Ablation of the search methods on digits, Fashion-MNIST (or CIFAR-10), over several seeds,
against random search at the same compute and a MobileNetV2-style width sweep.

    flock /tmp/edgenas-bench.lock python scripts/bench_search.py   # default: 3 seeds, arms a,b,c,d,e,random,sweep
    flock /tmp/edgenas-bench.lock python scripts/bench_search.py --data fashion-mnist --image-size 14 \
        --seeds 10 --out runs/bench_fashion        # arms a,b,d,e,random,sweep,w4,w4n at the "fashion" size
                                                   # (the README's run: 24 min on 2 cores)
    python scripts/bench_search.py --quick         # minutes: plumbing check, numbers meaningless
    python scripts/bench_search.py --arms a,bd,m,pt,random --seeds 5
    python scripts/bench_search.py --data cifar10:/data/cifar --image-size 32
    python scripts/bench_search.py --from-results runs/bench_search/results.json   # re-summarise, re-plot
    flock /tmp/edgenas-bench.lock python scripts/bench_search.py --from-results runs/bench_fashion/results.json \
        --data fashion-mnist --image-size 14 --out runs/bench_fashion --remeasure   # latencies measured again, when quiet
    python scripts/bench_search.py --data fashion-mnist --image-size 14 --out runs/bench_fashion --resume
                                                   # finish an interrupted run: only its unfinished (arm, seed) jobs

Arms (per seed: same data split, latency budget and final-training recipe for every arm; every
DARTS arm uses the search defaults: hinge latency term, beta-DARTS and the budget fit, docs/search.md):
  a  DARTS (argmax)                          b  + QuantNAS noise (8-bit)
  c  + entropy penalty                       d  + DASS sparse ops (c's config)
  e  SpaceEvo-evolved space (c's config)
  random  random search (``edgenas.search.strategies`` "random", called as the build calls it):
          arm a's space, latency table and budget; samples trained 3 epochs each until DARTS'
          training MACs for arm a's config are spent, the best on the validation split is then
          final-trained like every other arm, so search + final training compute match arm a's
  sweep  hand-designed MobileNetV2-style nets at width multipliers 0.25-1.0
  w4  arm a's architecture trained and measured W4A8 (a search without noise does not depend
      on the bit width)                      w4n searched with QuantNAS noise at 4 bits, W4A8
  opt-in (--arms): a0 plain DARTS as before the remedies (additive latency term, no remedy);
          bd direct fake-quant search (8-bit, STE); m bits {4,8} + noise, entropy, BitOps;
          pt c's config with DARTS-PT perturbation selection.
The budget (without --budget-ms) is the expected latency at uniform alphas, as in the build
(--budget-rule first: the table sum of the first candidate per layer, the earlier default).
The default is a,b,c,d,e,random,sweep because that fits 3 seeds in under 30 minutes on 2 cores
(measured: 21.8 min from a cold latency cache, 2026-11-24; since then random search's MAC budget
counts every alpha step DARTS takes, ~26 % more samples at the default size, not yet re-measured).
bd, m and pt each cost about as much as b (~100 s of search per seed); all three would add an
estimated ~9 minutes, so they are opt-in.

How it stays fast and fair on 2 cores: (1) the op latency table of every arm's space is profiled
first, alone, and cached; (2) the (seed, arm) searches and trainings then run in ``--jobs``
worker processes (torch 1 thread each) and never measure latency; (3) latency depends only on the
architecture, so each *unique* chosen architecture is compiled INT8 by TVM and measured once at
the end, after the workers have exited (lowest of three protocol medians). SpaceEvo's space is
evolved once (with seed 0's split: KD teacher, stage tables, aging evolution) and searched with
every seed: the seeds vary the search, not the evolution (its cost is reported once, ``evolve_s``).
A seed sets the data split too, so arms are compared paired by seed.

Reports per arm mean ± sample std over the seeds of test accuracy fp32 and quantized (brevitas
QAT), the drop, measured INT8 latency, BitOps, weight sparsity and search wall time (random
search's samples and MACs are in the rows), each searched arm minus random search and minus the
sweep net nearest in latency, paired by seed, with a 95 % Student-t interval, and issue 4's goals
computed from those numbers (``edgenas.report.ablation.goals``: the searched int8 model vs the
sweep's interpolated curve, the int8 drop with and without noise-aware search), each met or not.
Writes ``<out>/results.json`` (rows per seed, summary, comparisons, goals), ``<out>/results.md``
(the table and the goals in Markdown), ``<out>/baselines.json`` (every arm as mean ± std, kind
searched / random / sweep, with the data set, image size and target: ``edgenas report RUN
--baselines FILE`` pins them to a run) and the same file in this host's tuning root,
``tuning_logs/<target>/baselines.json``, where the report of every build for the target finds it
(not for --quick), ``<out>/pareto.png`` (mean ± std bars per arm, single seeds as faint points)
and the op latency cache ``<out>/op_latency.json`` (reused by later runs).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np
import torch

from edgenas import fsio, records
from edgenas.build.config import EVOLVE_PRESETS, POLICIES
from edgenas.data import load_data
from edgenas.latency.profile import measure_arch, profile_space
from edgenas.latency.table import LatencyTable
from edgenas.measure.protocol import measure_here
from edgenas.quantize.convert import calibrate, to_brevitas
from edgenas.quantize.recipe import for_target, get_recipe
from edgenas.report.ablation import ARM_LABELS, baselines, comparisons, goal_lines, goals, summarize, summary_table
from edgenas.search.collapse import parameter_free_share
from edgenas.search.darts import SearchConfig
from edgenas.search.objective import default_budget
from edgenas.compute import resolve_compute
from edgenas.search.strategies import STRATEGIES
from edgenas.space.arch import Arch, SpaceConfig, arch_from_choices
from edgenas.space.cost import arch_bitops
from edgenas.search.evolve import evolve_for_budget
from edgenas.space.sparse import train_sparse, weight_sparsity
from edgenas.space.supernet import freeze
from edgenas.target import get_target
from edgenas.tuning_store import TuningStore
from edgenas.train import evaluate, fit

SIZES = {
    "default": dict(search=SearchConfig(epochs=10, warmup=3, batch=32, a_lr=1e-2), final_epochs=15, qat_epochs=4,
                    final_subsample=0, widths=(0.25, 0.5, 0.75, 1.0),
                    evolve=EVOLVE_PRESETS.get("build")),
    # Fashion-MNIST on a loaded 2-core machine (load 8-10) in about an hour: the search sees 300
    # weight images (+150 alpha, 150 validation); every arm's final training sees the same 1,500 + 750, and
    # every arm is tested on the whole official test split (10,000). SpaceEvo gets the quick
    # evolution with the fused-MBConv family added (its stage tables are profiled on the target,
    # which is what costs).
    "fashion": dict(search=SearchConfig(epochs=4, warmup=2, batch=32, a_lr=1e-2, subsample=300), final_epochs=3,
                    qat_epochs=1, final_subsample=1500, widths=(0.25, 0.5, 1.0),
                    evolve=dataclasses.replace(EVOLVE_PRESETS.get("quick"), blocks=("mb", "dw", "fmb"))),
    "quick": dict(search=SearchConfig(epochs=3, warmup=1, batch=32, a_lr=1e-2, subsample=300), final_epochs=3,
                  qat_epochs=1, final_subsample=600, widths=(0.25, 1.0),
                  evolve=EVOLVE_PRESETS.get("quick")),
}
# the method terms of edgenas build's presets (edgenas.build.config), so the arms measure what a build runs
MIXED, SPARSE = POLICIES.get("mixed"), POLICIES.get("sparse")
ENTROPY, BITOPS, SPARSITY = MIXED.entropy_weight, MIXED.bitops_weight, SPARSE.sparsity_weight
# The int4 noise ablation, trained and measured W4A8: w4 = arm a's architecture (its job trains
# both), w4n = searched with QuantNAS noise at 4 bits.
W4A8 = ("w4", "w4n")


DEFAULT_ARMS = {"digits": "a,b,c,d,e,random,sweep", "fashion-mnist": "a,b,d,e,random,sweep,w4,w4n"}


def arms(base_cfg: SearchConfig) -> dict[str, tuple[dict, SearchConfig]]:
    """Arm name -> (SpaceConfig changes, the arm's SearchConfig: ``base_cfg`` with its method
    switches). ``random`` searches arm a's space with arm a's config (its compute budget is DARTS'
    training MACs for that config)."""
    noise = dict(noise=MIXED.noise)
    ent = dict(noise, entropy_weight=ENTROPY)
    changes = {
        "a": ({}, {}),
        "a0": ({}, dict(latency_form="add", remedy="none", fit_budget=False)),
        "b": ({}, noise),
        "bd": ({}, dict(noise="direct")),
        "c": ({}, ent),
        "d": ({"sparse_levels": SPARSE.sparse_levels}, dict(ent, sparsity_weight=SPARSITY)),
        "e": ({}, ent),
        "m": ({"bits": (4, 8)}, dict(ent, bitops_weight=BITOPS)),
        "pt": ({}, dict(ent, selection="pt")),
        "random": ({}, {}),
        "w4": ({}, {}),
        "w4n": ({"bits": (4,)}, noise),
    }
    return {name: (space_kw, dataclasses.replace(base_cfg, **cfg_kw)) for name, (space_kw, cfg_kw) in changes.items()}


def mbv2(mult: float, image: int, cin: int, classes: int) -> Arch:
    """MobileNetV2's body at width ``mult`` (channels rounded to multiples of 8), cut to this input size."""
    c = lambda x: max(8, int(round(x * mult / 8)) * 8)  # noqa: E731
    layers = [("dw_k3", 16, 1), ("mb_k3_e6", 24, 2), ("mb_k3_e6", 24, 1), ("mb_k3_e6", 32, 2), ("mb_k3_e6", 32, 1),
              ("mb_k3_e6", 32, 1), ("mb_k3_e6", 64, 1)]
    mid = "|".join(f"{op}_c{c(ch)}_s{s}_w8a8" for op, ch, s in layers)
    return Arch.parse(f"r{image}_i{cin}_stem{c(32)}|{mid}|head64_n{classes}")


def results_markdown(summary: dict, goal: dict, setting: str) -> str:
    """results.md: the printed table as Markdown, and the goals."""
    return (f"# Search ablation: {setting}\n\nMean ± sample std over the seeds.\n\n"
            + summary_table(summary, markdown=True) + "\n\n## Goals (means over seeds)\n\n"
            + "\n".join(f"- {line.strip()}" if not line.startswith(" ") else f"  - {line.strip()}"
                        for line in goal_lines(goal)) + "\n")


def install_baselines(base: list[dict], target: str, quick: bool = False) -> Path | None:
    """Write ``baselines.json`` atomically to this host's tuning root for ``target``
    (``tuning_logs/<target>/``, ``EDGENAS_TUNING_LOGS`` overrides), where every report of a build
    for that target finds it (``edgenas.report.baselines``); not for --quick runs, whose numbers
    would then pass as baselines. Returns the path written, or None."""
    if quick:
        return None
    return fsio.write_json(TuningStore(target).search_baselines_file, base)


# ------------------------------------------------------------------ worker side (no latency measured)
_W: dict = {}


def _worker_init(args_dict: dict) -> None:
    torch.set_num_threads(1)
    np.seterr(all="ignore")
    _W["args"] = argparse.Namespace(**args_dict)
    _W["data"] = {}
    _W["compute"] = resolve_compute(_W["args"].train_device)   # this worker's training device


def _data(seed: int):
    a = _W["args"]
    if seed not in _W["data"]:
        _W["data"][seed] = load_data(a.data, a.image_size, seed)
    return _W["data"][seed]


def budget_for(space: SpaceConfig, table: LatencyTable, rule: str) -> tuple[float, str]:
    """``first``: the table sum of the first candidate per layer; ``uniform``: the expected latency
    at uniform alphas (where the search starts). Returns the budget and how it was set."""
    if rule == "first":
        first = arch_from_choices(space, [space.candidates(i)[0] for i in range(len(space.positions()))])
        return table.arch_sum(first), f"table sum of {first}"
    return default_budget(table, space), "expected latency at uniform alphas"


def final_training(arch: Arch, data, seed: int, size: dict, recipe) -> dict:
    """The one final-training recipe every arm gets: fp32 on the same training subset, brevitas
    QAT, both tested on the whole official test split."""
    torch.manual_seed(seed)
    model = freeze(arch)
    t = time.time()
    train = data.subsample(size["final_subsample"]).train
    train_sparse(model, train, size["final_epochs"], 3e-3, seed, compute=_W["compute"])
    fp32 = evaluate(model, *data.test)
    q = calibrate(to_brevitas(model.eval(), recipe), train[0])
    fit(q, train, recipe.qat_epochs, recipe.qat_lr, seed, compute=_W["compute"])
    quant = evaluate(q, *data.test)
    return dict(arch=str(arch), fp32_acc=fp32, quant_acc=quant, drop_pp=100 * (fp32 - quant),
                bitops_g=arch_bitops(arch) / 1e9, sparsity=weight_sparsity(model), skip_share=parameter_free_share(arch),
                bits=sorted({(layer.w_bits, layer.a_bits) for layer in arch.layers}), train_s=time.time() - t)


def w4a8(arch: Arch) -> Arch:
    return arch.with_layers(dataclasses.replace(layer, w_bits=4, a_bits=8) for layer in arch.layers)


def run_job(job: dict) -> list[dict]:
    """One (arm, seed): search (or the given arch), final fp32 training, QAT; no latency here.
    Arm a's job also trains its architecture at W4A8 as arm ``w4`` (searched without noise: a
    search without the noise transform does not depend on the bit width)."""
    a, size = _W["args"], SIZES[_W["args"].size]
    data, seed, name = _data(job["seed"]), job["seed"], job["arm"]
    # the build's QAT: capped at the target's weight width ([int8] weight_bits, 7 on x86-avx2)
    recipe = for_target(dataclasses.replace(get_recipe(a.recipe), qat_epochs=size["qat_epochs"]), get_target(a.target))
    info: dict = {}
    t = time.time()
    if "arch" in job:
        arch = Arch.parse(job["arch"])
    else:
        # called as the build's search stage calls a strategy (edgenas/build/stages.py, STRATEGIES)
        strategy = STRATEGIES.get("random" if name == "random" else "darts")
        res = strategy(job["space"], data, job["table"], job["budget"], job["cfg"], seed, compute=_W["compute"])
        last = res.history[-1]
        if name == "random":  # compute actually spent, against DARTS' training MACs it is matched to
            info.update(random_samples=len(res.history), macs_spent=last["macs_spent"], macs_budget=last["macs_budget"])
        else:
            info.update(skip_share_probs=last["skip_share_probs"], entropy=last["entropy"])
        arch = res.arch
        info.update(search_s=time.time() - t, expected_ms=res.expected_ms)
    rows = [dict(arm=name, seed=seed, **final_training(w4a8(arch) if name == "w4n" else arch, data, seed, size, recipe),
                 **info)]
    if job.get("also_w4"):
        rows.append(dict(arm="w4", seed=seed, searched_as=name, **final_training(w4a8(arch), data, seed, size, recipe),
                         **info))
    return rows


def four_bit_table(table: LatencyTable) -> LatencyTable:
    """The 8-bit op table relabelled for 4-bit weights: TVM runs a W4 QDQ model with the same int8
    kernels (the weights are int8 values in [-8, 7]), so the latency model says 4 bits buys
    nothing here; the W4A8 models are compiled and measured like every other arm."""
    return table.merged({k.replace("|w8|", "|w4|"): v for k, v in table.entries.items() if "|w8|" in k})


# ------------------------------------------------------------------ main side
class Bench:
    def __init__(self, args):
        self.args, self.size = args, SIZES[args.size]
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.data = load_data(args.data, args.image_size, 0)
        self.base = SpaceConfig(image_size=args.image_size, in_channels=self.data.channels, num_classes=self.data.classes)
        self.target = get_target(args.target)
        self.recipe = for_target(dataclasses.replace(get_recipe(args.recipe), qat_epochs=self.size["qat_epochs"]), self.target)
        self.cache = self.out / "op_latency.json"
        self.table = records.load(self.cache, LatencyTable) if self.cache.exists() else LatencyTable(self.target.name)
        self.seeds = list(range(args.seed, args.seed + args.seeds))
        self.info: dict[str, dict] = {}

    def median(self, lib: str, shape) -> float:
        """Lowest of three protocol medians: other jobs on a shared CPU only ever add time."""
        return min(measure_here(lib, shape, min_samples=self.args.repeat, target=self.target.name).stats.median_ms
                   for _ in range(3))

    def profiled(self, space: SpaceConfig, table: LatencyTable | None = None) -> LatencyTable:
        t = time.time()
        todo = len((table or self.table).missing(space))
        self.table = profile_space(space, table or self.table, self.recipe, self.target, self.median)
        records.save(self.cache, self.table)
        if todo:
            print(f"  profiled {todo} op configurations INT8 on {self.target.name} in {time.time() - t:.0f} s", flush=True)
        return self.table

    def evolved_space(self, budget: float) -> SpaceConfig:
        t = time.time()
        search_data = self.data.subsample(self.size["search"].subsample)
        res, tables, self.table = evolve_for_budget(self.base, search_data, self.table, budget, self.size["evolve"],
                                                    lambda space, table: self.profiled(space, table), self.args.seed,
                                                    compute=resolve_compute(self.args.train_device))
        records.save(self.out / "stage_tables.json", tables)
        print(f"  SpaceEvo: best {res.best} Q-T {res.score:.4f} after {res.evaluated} spaces; "
              f"stages {[(st.channels, st.ops[0]) for st in res.space.stages]} ({time.time() - t:.0f} s)", flush=True)
        self.info["e"] = dict(evolve_s=time.time() - t, qt_score=res.score, evolved=str(res.best),
                              teacher_acc=tables.teacher_acc)
        return res.space

    def jobs(self, budget: float) -> list[dict]:
        """Every (arm, seed) with its space and op table profiled beforehand (main process, alone)."""
        jobs = []
        for name, (space_kw, cfg) in arms(self.size["search"]).items():
            if name not in self.args.arms:
                continue
            if name == "w4":
                continue   # trained inside arm a's job
            space = self.evolved_space(budget) if name == "e" else dataclasses.replace(self.base, **space_kw)
            table = four_bit_table(self.profiled(self.base)) if name == "w4n" else self.profiled(space)
            jobs += [dict(arm=name, seed=s, space=space, table=table, cfg=cfg, budget=budget,
                          also_w4=name == "a" and "w4" in self.args.arms) for s in self.seeds]
        for mult in self.size["widths"] if "sweep" in self.args.arms else ():
            arch = mbv2(mult, self.args.image_size, self.data.channels, self.data.classes)
            jobs += [dict(arm=f"mbv2_{mult}", seed=s, arch=str(arch)) for s in self.seeds]
        return jobs

    def finished_rows(self, settings: dict) -> list[dict]:
        """With ``--resume``: the rows an interrupted run of the same settings left in
        ``results.json`` (each (arm, seed) job is seeded and independent, so finishing the rest
        gives what one uninterrupted run gives). Without it, an unfinished run is not overwritten."""
        path = self.out / "results.json"
        if not path.exists():
            return []
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise SystemExit(f"{path}: unreadable ({e}); move it away to start again") from None
        if not old.get("partial"):
            return []  # a finished run: this one replaces it
        if not self.args.resume:
            raise SystemExit(f"{path}: an unfinished run; pass --resume to finish it, or choose another --out")
        if old.get("settings") != settings:
            raise SystemExit(f"{path}: the unfinished run had other settings ({old.get('settings')}); "
                             "rerun with those or choose another --out")
        return old["rows"]

    def run(self) -> None:
        t0 = time.time()
        self.profiled(self.base)
        budget, how = budget_for(self.base, self.table, self.args.budget_rule)
        budget = self.args.budget_ms or budget
        print(f"budget {budget:.3f} ms ({'--budget-ms' if self.args.budget_ms else how}); seeds {self.seeds}", flush=True)
        jobs = self.jobs(budget)
        settings = {k: getattr(self.args, k) for k in ("data", "image_size", "size", "arms", "target", "recipe")}
        settings.update(budget_ms=round(budget, 6), seeds=self.seeds)
        rows = self.finished_rows(settings)
        done = {(r["arm"], r["seed"]) for r in rows}
        jobs = [j for j in jobs if (j["arm"], j["seed"]) not in done]
        print(f"{len(jobs)} (arm, seed) jobs on {self.args.jobs} worker(s)"
              + (f", {len(done)} finished by an earlier run (--resume)" if done else ""), flush=True)
        ctx = mp.get_context("spawn")
        with ctx.Pool(self.args.jobs, initializer=_worker_init, initargs=(vars(self.args),)) as pool:
            # longest first (searches before sweep trainings) keeps both workers busy to the end
            for done in pool.imap_unordered(run_job, sorted(jobs, key=lambda j: "arch" in j)):
                for row in done:
                    row.update(self.info.get(row["arm"], {}))
                    rows.append(row)
                    print(f"  {row['arm']} seed {row['seed']}: fp32 {row['fp32_acc']:.4f} quant {row['quant_acc']:.4f} "
                          f"skip {row['skip_share']:.0%} search {row.get('search_s', 0):.0f} s  {row['arch']}", flush=True)
                fsio.write_json(self.out / "results.json", {"rows": rows, "partial": True, "settings": settings})
        train_s = time.time() - t0
        unique = sorted({r["arch"] for r in rows})
        print(f"measuring {len(unique)} unique architectures INT8 on {self.target.name} (workers finished)", flush=True)
        self.measure_rows(rows)
        fsio.write_json(self.out / "results.json", {"rows": rows})   # measured: --from-results can redo the report
        self.report(dict(budget_ms=budget, data=self.data.name, image_size=self.args.image_size, seeds=self.seeds,
                         quick=self.args.quick, jobs=self.args.jobs, target=self.target.name, train_s=train_s,
                         wall_s=time.time() - t0, rows=rows))

    def measure_rows(self, rows: list[dict]) -> None:
        """Measure every unique architecture of ``rows`` INT8 (``self.median``) into its rows."""
        ms = {a: measure_arch(Arch.parse(a), self.recipe, self.target, self.median) for a in sorted({r["arch"] for r in rows})}
        for r in rows:
            r["int8_ms"] = ms[r["arch"]]
            r["table_ms"] = self.table.arch_sum(Arch.parse(r["arch"])) if self._in_table(r["arch"]) else None
        rows.sort(key=lambda r: (r["arm"], r["seed"]))

    def remeasure(self, res: dict) -> None:
        """``--from-results --remeasure``: the finished run's architectures measured again (e.g. on a
        quiet machine after a run that warned of a busy one), its accuracies kept; the report says when."""
        t0, load = time.time(), os.getloadavg()[0]
        print(f"measuring {len({r['arch'] for r in res['rows']})} unique architectures INT8 on {self.target.name} again "
              f"(load {load:.2f})", flush=True)
        self.measure_rows(res["rows"])
        res["remeasured"] = dict(at=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t0)), load_start=round(load, 2),
                                 load_end=round(os.getloadavg()[0], 2), seconds=round(time.time() - t0, 1))
        self.report(res)

    def _in_table(self, arch: str) -> bool:
        try:
            self.table.arch_sum(Arch.parse(arch))
            return True
        except KeyError:
            return False

    def report(self, res: dict) -> None:
        """Print the table, the comparisons and the goals; write results.json, results.md,
        baselines.json (in --out and, unless --quick, in the tuning root) and pareto.png."""
        rows = res["rows"]
        summary = summarize(rows)
        print("\n" + summary_table(summary))
        iv = lambda d, f: (f"{d['mean']:+{f}}" + (f" [{d['ci95'][0]:+{f}}, {d['ci95'][1]:+{f}}]"  # noqa: E731
                                                   if d["ci95"][0] is not None else ""))
        comp = comparisons(rows, summary)
        if comp:
            print("\npaired by seed, mean [95 % t interval]:")
        for arm, refs in comp.items():
            for ref, d in refs.items():
                print(f"  {arm} - {ref:9s} int8 accuracy {iv(d['int8_acc_pp'], '.2f')} pp, "
                      f"latency {iv(d['int8_ms'], '.4f')} ms")
        if res.get("wall_s") is not None:
            train = f" (profile + evolve + search + training {res['train_s'] / 60:.1f} min, measurement " \
                    f"{(res['wall_s'] - res['train_s']) / 60:.1f} min)" if res.get("train_s") else ""
            print(f"wall {res['wall_s'] / 60:.1f} min{train}, {len(res['seeds'])} seeds, {res.get('jobs')} job(s)")
        if res.get("remeasured"):   # the wall above is the original run's; the latencies are these
            m = res["remeasured"]
            print(f"latencies measured again at {m['at']} in {m['seconds']:.0f} s (load {m['load_start']} -> {m['load_end']})")
        goal = goals(summary, rows)
        print("\ngoals (means over seeds):\n" + "\n".join("  " + line for line in goal_lines(goal)))
        target = res.get("target", self.target.name)
        setting = (f"{res['data']} {res['image_size']}x{res['image_size']}, {target}, "
                   f"scripts/bench_search.py, seeds {res['seeds']}")
        res = {k: v for k, v in res.items() if k not in ("rows", "summary", "comparisons", "goals", "vs_random")}
        fsio.write_json(self.out / "results.json", dict(res, summary=summary, comparisons=comp, goals=goal, rows=rows))
        fsio.write_text(self.out / "results.md", results_markdown(summary, goal, setting))
        base = baselines(summary, setting, data=res["data"], image_size=res["image_size"], target=target)
        fsio.write_json(self.out / "baselines.json", base)
        shared = install_baselines(base, target, quick=bool(res.get("quick")))
        self.plot(rows, summary, res["seeds"])
        print(f"wrote {self.out / 'results.json'}, {self.out / 'results.md'}, {self.out / 'baselines.json'} "
              f"(edgenas report RUN --baselines {self.out / 'baselines.json'}), {self.out / 'pareto.png'}")
        print(f"baselines for every report of a {target} build on this host: {shared}" if shared else
              "baselines not installed in the tuning root: --quick numbers are a plumbing check, not baselines")

    def plot(self, rows: list[dict], summary: dict, seeds: list[int]) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

        fig, ax = plt.subplots(figsize=(8, 6.4))
        sweep = sorted((a for a in summary if a.startswith("mbv2")), key=lambda a: summary[a]["int8_ms"]["mean"])
        if sweep:
            pts = [r for r in rows if r["arm"] in sweep]
            ax.scatter([r["int8_ms"] for r in pts], [100 * r["quant_acc"] for r in pts], color="gray", alpha=0.3, s=14)
            ax.errorbar([summary[a]["int8_ms"]["mean"] for a in sweep], [100 * summary[a]["quant_acc"]["mean"] for a in sweep],
                        xerr=[summary[a]["int8_ms"]["std"] for a in sweep],
                        yerr=[100 * summary[a]["quant_acc"]["std"] for a in sweep], fmt="o--", color="gray", capsize=3,
                        label="hand-designed: MobileNetV2-style width sweep")
            for a in sweep:
                ax.annotate(f"x{a.split('_')[1]}", (summary[a]["int8_ms"]["mean"], 100 * summary[a]["quant_acc"]["mean"]),
                            xytext=(5, -11), textcoords="offset points", fontsize=7, color="gray")
        for i, arm in enumerate(a for a in summary if not a.startswith("mbv2")):
            color = "black" if arm == "random" else f"C{i}"
            pts = [r for r in rows if r["arm"] == arm]
            ax.scatter([r["int8_ms"] for r in pts], [100 * r["quant_acc"] for r in pts], color=color, alpha=0.3, s=14)
            s = summary[arm]
            label = "random search, same compute" if arm == "random" else f"{arm}: {ARM_LABELS.get(arm, arm)}"
            ax.errorbar(s["int8_ms"]["mean"], 100 * s["quant_acc"]["mean"], xerr=s["int8_ms"]["std"],
                        yerr=100 * s["quant_acc"]["std"], fmt="s" if arm == "random" else "o", color=color, capsize=3,
                        ms=7 if arm == "random" else 5, label=f"{label} (n={s['n']})", zorder=3)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"measured INT8 latency on {self.target.name} (ms, TVM, log scale)")
        ax.set_ylabel(f"quantized test accuracy (%, {self.data.name})")
        ax.set_title(f"mean ± std over {len(seeds)} seeds (bars); faint points: single seeds", fontsize=9)
        ax.grid(alpha=0.3, which="both")
        # below the axes: inside, it hid the sweep's fastest net
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, fontsize=7, frameon=False)
        fig.tight_layout()
        fig.savefig(self.out / "pareto.png", dpi=130)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="digits")
    ap.add_argument("--image-size", type=int, default=8)
    ap.add_argument("--out", default="runs/bench_search")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--arms", default=None, help=f"comma-separated (default per data set: {DEFAULT_ARMS}; "
                    "also a0 = plain DARTS with the additive latency term and no remedy, bd, m, pt, w4, w4n)")
    ap.add_argument("--size", choices=sorted(SIZES), default=None,
                    help="search / training sizes (default: quick with --quick, fashion for fashion-mnist, else default)")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per arm (seed, seed+1, ...)")
    ap.add_argument("--seed", type=int, default=0, help="first seed")
    ap.add_argument("--resume", action="store_true", help="finish an interrupted run in --out (same settings): "
                    "only the (arm, seed) jobs it had not finished run")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes for searches and trainings")
    ap.add_argument("--train-device", default="cpu", help="auto | cpu | cuda[:N]: where searches and trainings run "
                    "(cpu keeps results bit-identical; with cuda use --jobs 1, see `edgenas build --help`)")
    ap.add_argument("--budget-ms", type=float, default=None)
    ap.add_argument("--budget-rule", choices=("first", "uniform"), default="uniform",
                    help="the budget without --budget-ms: first = table sum of the first candidate per layer, "
                         "uniform = expected latency at uniform alphas")
    ap.add_argument("--target", default="x86-avx2")
    ap.add_argument("--recipe", default="int8-per-channel")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--from-results", type=Path, default=None, metavar="RESULTS_JSON",
                    help="recompute summary, comparisons, baselines.json and pareto.png from a finished run's "
                         "results.json into --out (no training, no measurement)")
    ap.add_argument("--remeasure", action="store_true",
                    help="with --from-results: measure every architecture's INT8 latency again (accuracies kept), "
                         "e.g. after a run measured on a busy machine")
    args = ap.parse_args()
    if args.remeasure and args.from_results is None:
        ap.error("--remeasure needs --from-results RESULTS_JSON")
    args.size = args.size or ("quick" if args.quick else "fashion" if args.data == "fashion-mnist" else "default")
    args.arms = sorted(set((args.arms or DEFAULT_ARMS.get(args.data, DEFAULT_ARMS["digits"])).split(",")))
    unknown = set(args.arms) - set(arms(SIZES["default"]["search"])) - {"sweep"}
    if unknown:
        ap.error(f"unknown arm(s) {', '.join(sorted(unknown))}")
    torch.set_num_threads(1)
    np.seterr(all="ignore")
    if args.from_results is not None:
        res = json.loads(args.from_results.read_text())
        if res.get("partial") or any(r.get("int8_ms") is None for r in res["rows"]):
            ap.error(f"{args.from_results}: an unfinished run (latencies are measured at the end)")
        bench = Bench(args)
        bench.remeasure(res) if args.remeasure else bench.report(res)
    else:
        Bench(args).run()


if __name__ == "__main__":
    main()
