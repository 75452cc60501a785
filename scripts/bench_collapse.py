#!/usr/bin/env python
"""Which collapse remedy: plain DARTS (additive latency term) vs the hinge term, with and without
β-DARTS's Beta-Decay regularisation or DARTS-'s auxiliary skip, on one data set and seeds.

    flock /tmp/edgenas-bench.lock python scripts/bench_collapse.py --data fashion-mnist --image-size 14

Search only, with a MAC-proportional latency table (the choice of remedy is about the dynamics of
the alphas, not about the target; 1e-7 ms per MAC, skip free), at the default budget (the table
sum of the first candidate per layer (the build's default before the hinge), or with --budget uniform
the expected latency at uniform alphas). Each derived architecture is then
trained briefly (``--train-images`` for 2 epochs) and tested on ``--test-images`` of the test
split, so a remedy that avoids ``skip`` but picks worse ops shows too. Prints a table per arm and
seed (skip share of the derived architecture and of softmax(alpha), accuracy, expected latency)
and writes ``<out>/collapse.json``. docs/search.md records the run that chose the default.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

from edgenas import fsio
from edgenas.compute import resolve_compute
from edgenas.data import load_data
from edgenas.latency.table import LatencyTable, op_key
from edgenas.search.darts import SearchConfig, search
from edgenas.search.objective import default_budget
from edgenas.space.arch import SpaceConfig, arch_from_choices
from edgenas.space.cost import op_cost
from edgenas.space.supernet import freeze
from edgenas.train import evaluate, fit

ARMS = {
    "add": dict(latency_form="add", remedy="none"),
    "hinge": dict(latency_form="hinge", remedy="none"),
    "hinge+beta": dict(latency_form="hinge", remedy="beta"),
    "hinge+beta5": dict(latency_form="hinge", remedy="beta", remedy_weight=5.0),
    "hinge+darts-": dict(latency_form="hinge", remedy="darts-"),
}


def mac_table(space: SpaceConfig) -> LatencyTable:
    entries = {op_key(*k): op_cost(k[0], *k[2:]).macs * 1e-7 for k in LatencyTable("mac").missing(space)}
    return LatencyTable("mac-proxy", entries, 0.01)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--image-size", type=int, default=14)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--subsample", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--train-images", type=int, default=4000)
    ap.add_argument("--test-images", type=int, default=2000)
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--budget", choices=("first", "uniform"), default="first",
                    help="first: table sum of the first candidate per layer; uniform: expected latency at uniform alphas")
    ap.add_argument("--out", type=Path, default=Path("runs/bench_collapse"))
    ap.add_argument("--train-device", default="cpu", help="auto | cpu | cuda[:N] (see `edgenas build --help`)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    compute = resolve_compute(args.train_device)
    rows = []
    for seed in range(args.seeds):
        data = load_data(args.data, args.image_size, seed)
        space = SpaceConfig(image_size=args.image_size, in_channels=data.channels, num_classes=data.classes)
        table = mac_table(space)
        first = arch_from_choices(space, [space.candidates(i)[0] for i in range(len(space.positions()))])
        budget = table.arch_sum(first) if args.budget == "first" else default_budget(table, space)
        base = SearchConfig(epochs=args.epochs, warmup=2, batch=32, a_lr=1e-2, subsample=args.subsample)
        train = (data.train[0][:args.train_images], data.train[1][:args.train_images])
        test = (data.test[0][:args.test_images], data.test[1][:args.test_images])
        for arm in args.arms.split(","):
            t = time.time()
            res = search(space, data, table, budget, dataclasses.replace(base, **ARMS[arm]), seed, compute=compute)
            search_s = time.time() - t
            torch.manual_seed(seed)
            model = freeze(res.arch)
            fit(model, train, 2, 3e-3, seed, compute=compute)
            last = res.history[-1]
            rows.append(dict(arm=arm, seed=seed, budget=args.budget, skip_share_arch=last["skip_share_arch"],
                             skip_share_probs=last["skip_share_probs"], supernet_val=last["val_acc"],
                             test_acc=evaluate(model, *test), expected_ms=res.expected_ms, budget_ms=budget,
                             search_s=search_s, arch=str(res.arch)))
            r = rows[-1]
            print(f"{arm:13s} seed {seed}: skip arch {r['skip_share_arch']:.2f} probs {r['skip_share_probs']:.2f} "
                  f"supernet val {r['supernet_val']:.3f} test {r['test_acc']:.3f} E[lat] {r['expected_ms']:.3f}/"
                  f"{budget:.3f} ms  {search_s:.0f} s  {r['arch']}", flush=True)
            fsio.write_json(args.out / "collapse.json", dict(vars(args), out=str(args.out), rows=rows))


if __name__ == "__main__":
    main()
