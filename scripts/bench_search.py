#!/usr/bin/env python
"""Ablation of the search methods on digits (or CIFAR-10), against a MobileNetV2-style width sweep.

    python scripts/bench_search.py                 # default size (the numbers in the README)
    python scripts/bench_search.py --quick         # minutes: plumbing check, numbers meaningless
    python scripts/bench_search.py --data cifar10:/data/cifar --image-size 32

Arms (same data, seed and budget; each final model trained with the same recipe):
  a  plain DARTS (argmax)                    b  + QuantNAS noise (8-bit)
  bd direct fake-quant search (8-bit, STE)   c  + entropy penalty
  d  + DASS sparse ops (c's config)          e  SpaceEvo-evolved space (c's config)
  m  QuantNAS mixed precision: bits {4,8}, noise, entropy, BitOps term
  pt c's supernet config with DARTS-PT perturbation selection
and the hand-designed baseline: MobileNetV2-style nets at width multipliers 0.25-1.0.

Reports test accuracy fp32 and quantized (brevitas QAT at the arch's per-layer bits), the drop,
INT8 latency of the chosen model measured on this machine (compiled by TVM through
``edgenas.latency.profile.measure_arch``), BitOps, weight sparsity and search wall time. Writes
``<out>/results.json``, ``<out>/pareto.png`` and the op latency cache ``<out>/op_latency.json``
(profiling is most of the first run's time; later runs reuse it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from edgenas import records
from edgenas.data import load_data
from edgenas.latency.profile import measure_arch, profile_space
from edgenas.latency.table import LatencyTable
from edgenas.measure.local import measure_local
from edgenas.quantize.convert import calibrate, to_brevitas
from edgenas.quantize.recipe import get_recipe
from edgenas.search.darts import SearchConfig, search
from edgenas.space.arch import Arch, SpaceConfig, arch_from_choices
from edgenas.space.cost import arch_bitops
from edgenas.space.evolve import EvolveConfig, evolve_for_budget
from edgenas.space.sparse import train_sparse, weight_sparsity
from edgenas.space.supernet import freeze
from edgenas.target import get_target
from edgenas.train import evaluate, fit

SIZES = {
    "default": dict(search=SearchConfig(epochs=10, warmup=3, batch=32, a_lr=1e-2), final_epochs=15, qat_epochs=4,
                    widths=(0.25, 0.5, 0.75, 1.0),
                    evolve=EvolveConfig(blocks=("mb", "fmb", "dw", "mbh"), n_samples=20_000, cycles=300)),
    "quick": dict(search=SearchConfig(epochs=3, warmup=1, batch=32, a_lr=1e-2), final_epochs=3, qat_epochs=1,
                  widths=(0.25, 1.0),
                  evolve=EvolveConfig(blocks=("mb", "dw"), n_widths=2, n_samples=2000, top_k=20, population=8, sample_size=4,
                                      cycles=30, teacher_epochs=2, kd_epochs=1)),
}
ENTROPY, BITOPS, SPARSITY = 1e-2, 1e-2, 0.2


def arms(base_cfg: SearchConfig) -> dict[str, tuple[dict, dict]]:
    """Arm name -> (SpaceConfig changes, SearchConfig changes)."""
    noise = dict(noise="gauss")
    ent = dict(noise, entropy_weight=ENTROPY)
    return {
        "a": ({}, {}),
        "b": ({}, noise),
        "bd": ({}, dict(noise="direct")),
        "c": ({}, ent),
        "d": ({"sparse_levels": (0.75,)}, dict(ent, sparsity_weight=SPARSITY)),
        "e": ({}, ent),
        "m": ({"bits": (4, 8)}, dict(ent, bitops_weight=BITOPS)),
        "pt": ({}, dict(ent, selection="pt")),
    }


def mbv2(mult: float, image: int, cin: int, classes: int) -> Arch:
    """MobileNetV2's body at width ``mult`` (channels rounded to multiples of 8), cut to this input size."""
    c = lambda x: max(8, int(round(x * mult / 8)) * 8)  # noqa: E731
    layers = [("dw_k3", 16, 1), ("mb_k3_e6", 24, 2), ("mb_k3_e6", 24, 1), ("mb_k3_e6", 32, 2), ("mb_k3_e6", 32, 1),
              ("mb_k3_e6", 32, 1), ("mb_k3_e6", 64, 1)]
    mid = "|".join(f"{op}_c{c(ch)}_s{s}_w8a8" for op, ch, s in layers)
    return Arch.parse(f"r{image}_i{cin}_stem{c(32)}|{mid}|head64_n{classes}")


class Bench:
    def __init__(self, args):
        self.args, self.size = args, SIZES["quick" if args.quick else "default"]
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.data = load_data(args.data, args.image_size, args.seed)
        self.base = SpaceConfig(image_size=args.image_size, in_channels=self.data.channels, num_classes=self.data.classes)
        self.recipe = dataclasses.replace(get_recipe(args.recipe), qat_epochs=self.size["qat_epochs"])
        self.target = get_target(args.target)
        self.cache = self.out / "op_latency.json"
        self.table = records.load(self.cache, LatencyTable) if self.cache.exists() else LatencyTable(self.target.name)
        self.results: list[dict] = []

    def median(self, lib: str, shape) -> float:
        """Lowest of three medians: other jobs on a shared CPU only ever add time."""
        return min(measure_local(lib, shape, repeat=self.args.repeat).median_ms for _ in range(3))

    def profiled(self, space: SpaceConfig, table: LatencyTable | None = None) -> LatencyTable:
        t = time.time()
        todo = len((table or self.table).missing(space))
        self.table = profile_space(space, table or self.table, self.recipe, self.target, self.median)
        records.save(self.cache, self.table)
        if todo:
            print(f"  profiled {todo} op configurations INT8 on {self.target.name} in {time.time() - t:.0f} s", flush=True)
        return self.table

    def finish(self, name: str, arch: Arch, info: dict) -> dict:
        """Train fp32 (DASS stages when the arch has sparse ops), QAT, measure; one result row."""
        seed, epochs = self.args.seed, self.size["final_epochs"]
        torch.manual_seed(seed)
        model = freeze(arch)
        t = time.time()
        train_sparse(model, self.data.train, epochs, 3e-3, seed)
        fp32 = evaluate(model, *self.data.test)
        q = calibrate(to_brevitas(model.eval(), self.recipe), self.data.train[0])
        fit(q, self.data.train, self.recipe.qat_epochs, self.recipe.qat_lr, seed)
        quant = evaluate(q, *self.data.test)
        train_s = time.time() - t
        ms = measure_arch(arch, self.recipe, self.target, self.median)
        row = dict(arm=name, arch=str(arch), fp32_acc=fp32, quant_acc=quant, drop_pp=100 * (fp32 - quant),
                   int8_ms=ms, table_ms=self.table.arch_sum(arch) if self._in_table(arch) else None,
                   bitops_g=arch_bitops(arch) / 1e9, sparsity=weight_sparsity(model),
                   bits=sorted({(layer.w_bits, layer.a_bits) for layer in arch.layers}), train_s=train_s, **info)
        self.results.append(row)
        print(f"  {name}: fp32 {fp32:.4f} quant {quant:.4f} drop {row['drop_pp']:+.2f} pp  {ms:.3f} ms  "
              f"{row['bitops_g']:.3f} GBitOps  sparsity {row['sparsity']:.2f}  {arch}", flush=True)
        (self.out / "results.json").write_text(json.dumps(self.results, indent=1))
        return row

    def _in_table(self, arch: Arch) -> bool:
        try:
            self.table.arch_sum(arch)
            return True
        except KeyError:
            return False

    def evolved_space(self, budget: float) -> tuple[SpaceConfig, dict]:
        t = time.time()
        res, tables, self.table = evolve_for_budget(self.base, self.data, self.table, budget, self.size["evolve"],
                                                    lambda space, table: self.profiled(space, table), self.args.seed)
        records.save(self.out / "stage_tables.json", tables)
        print(f"  SpaceEvo: best {res.best} Q-T {res.score:.4f} after {res.evaluated} spaces; "
              f"stages {[(st.channels, st.ops[0]) for st in res.space.stages]}", flush=True)
        return res.space, dict(evolve_s=time.time() - t, qt_score=res.score, evolved=str(res.best),
                               teacher_acc=tables.teacher_acc)

    def run(self) -> None:
        self.profiled(self.base)
        first = arch_from_choices(self.base, [self.base.candidates(i)[0] for i in range(len(self.base.positions()))])
        budget = self.args.budget_ms or self.table.arch_sum(first)
        print(f"budget {budget:.3f} ms (table sum of {first})", flush=True)
        base_cfg = self.size["search"]
        for name, (space_kw, cfg_kw) in arms(base_cfg).items():
            if name not in self.args.arms:
                continue
            print(f"arm {name}", flush=True)
            space, info = dataclasses.replace(self.base, **space_kw), {}
            if name == "e":
                space, info = self.evolved_space(budget)
            table = self.profiled(space)
            cfg = dataclasses.replace(base_cfg, **cfg_kw)
            t = time.time()
            res = search(space, self.data, table, budget, cfg, self.args.seed)
            last = res.history[-1]
            self.finish(name, res.arch, dict(info, search_s=time.time() - t, expected_ms=res.expected_ms,
                                             skip_share_arch=last["skip_share_arch"], entropy=last["entropy"]))
        for mult in self.size["widths"] if "sweep" in self.args.arms else ():
            print(f"MobileNetV2-style x{mult}", flush=True)
            self.finish(f"mbv2_{mult}", mbv2(mult, self.args.image_size, self.data.channels, self.data.classes), {})
        self.report(budget)

    def report(self, budget: float) -> None:
        head = f"{'arm':9s} {'fp32':>6s} {'quant':>6s} {'drop pp':>7s} {'int8 ms':>8s} {'GBitOps':>8s} {'sparse':>6s} {'search s':>8s}  bits"
        print("\n" + head + "\n" + "-" * len(head))
        for r in self.results:
            print(f"{r['arm']:9s} {r['fp32_acc']:6.4f} {r['quant_acc']:6.4f} {r['drop_pp']:7.2f} {r['int8_ms']:8.3f} "
                  f"{r['bitops_g']:8.3f} {r['sparsity']:6.2f} {r.get('search_s', 0):8.0f}  {r['bits']}")
        summary = dict(budget_ms=budget, data=self.data.name, image_size=self.args.image_size, seed=self.args.seed,
                       quick=self.args.quick, threads=torch.get_num_threads(), results=self.results)
        (self.out / "results.json").write_text(json.dumps(summary, indent=1))
        self.plot()

    def plot(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        sweep = sorted((r for r in self.results if r["arm"].startswith("mbv2")), key=lambda r: r["int8_ms"])
        if sweep:
            ax.plot([r["int8_ms"] for r in sweep], [100 * r["quant_acc"] for r in sweep], "o--", color="gray",
                    label="MobileNetV2-style width sweep")
            for r in sweep:
                ax.annotate(r["arm"].split("_")[1], (r["int8_ms"], 100 * r["quant_acc"]), xytext=(4, -10),
                            textcoords="offset points", fontsize=7, color="gray")
        points: dict[tuple[float, float], list[str]] = {}
        for r in (r for r in self.results if not r["arm"].startswith("mbv2")):
            points.setdefault((r["int8_ms"], 100 * r["quant_acc"]), []).append(r["arm"])
        for xy, names in points.items():  # arms that found the same model share one labelled point
            ax.scatter(*xy, zorder=3)
            ax.annotate(",".join(names), xy, xytext=(4, 4), textcoords="offset points", fontsize=9)
        ax.set_xlabel(f"measured INT8 latency on {self.target.name} (ms, TVM)")
        ax.set_ylabel(f"quantized test accuracy (%, {self.data.name})")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(self.out / "pareto.png", dpi=130)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="digits")
    ap.add_argument("--image-size", type=int, default=8)
    ap.add_argument("--out", default="runs/bench_search")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--arms", default="a,b,bd,c,d,e,m,pt,sweep")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget-ms", type=float, default=None)
    ap.add_argument("--target", default="x86-avx2")
    ap.add_argument("--recipe", default="int8-per-channel")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is fastest on a shared CPU)")
    args = ap.parse_args()
    args.arms = set(args.arms.split(","))
    torch.set_num_threads(args.threads)
    np.seterr(all="ignore")
    Bench(args).run()


if __name__ == "__main__":
    main()
