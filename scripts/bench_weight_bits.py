#!/usr/bin/env python
"""QAT accuracy at 8-bit vs 7-bit weights (the x86-avx2 cap) on scikit-learn digits.

Per seed: one fp32 training of a fixed architecture (the build's final-training call), then two
QATs from that same fp32 model with the same seed, one with the plain recipe (8-bit weights) and
one capped for x86-avx2 (for_target: 7-bit weights); int8 (brevitas) test accuracy of both.
Why: the cap buys the AVX2 kernel's exact ``pmaddubsw`` form (docs/quantization.md); this is
what it costs in accuracy.

    python scripts/bench_weight_bits.py --seeds 0,1,2 --json build/bench_weight_bits.json
"""
import argparse
import copy
import json
import time
from pathlib import Path

import torch

from edgenas.data import load_data
from edgenas.quantize.convert import calibrate, to_brevitas
from edgenas.quantize.recipe import for_target, get_recipe
from edgenas.space.arch import Arch
from edgenas.space.supernet import freeze
from edgenas.target import get_target
from edgenas.train import evaluate, fit

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
ap.add_argument("--json", type=Path, default=Path("build/bench_weight_bits.json"))
args = ap.parse_args()
SEEDS = [int(s) for s in args.seeds.split(",")]
EPOCHS = 10                       # fp32 epochs (tests/quantize's trained fixture); QAT: the recipe's 6
# tests/quantize's architecture at digits' native 8x8 (the build's default 16x16 space costs
# minutes per seed on two cores)
arch = Arch.parse("r8_i1_stem8|mb_k3_e3_c8_s1|mb_k5_e6_c16_s2|skip_c16_s1|head32_n10")
base = get_recipe("int8-per-channel")
recipes = {8: for_target(base, get_target("x86-avx512-vnni")), 7: for_target(base, get_target("x86-avx2"))}
assert recipes[8].weight_bits == 8 and recipes[7].weight_bits == 7
print(f"arch {arch}; fp32 {EPOCHS} epochs lr 3e-3, QAT {base.qat_epochs} epochs lr {base.qat_lr}", flush=True)
rows = []
for seed in SEEDS:
    t = time.time()
    data = load_data("digits", arch.image_size, seed)
    torch.manual_seed(seed)
    model = freeze(arch)
    fit(model, data.train, EPOCHS, 3e-3, seed)
    model.eval()
    fp32 = evaluate(model, *data.test)
    acc = {}
    for bits, r in recipes.items():
        torch.manual_seed(seed)                                   # Build.qat
        q = calibrate(to_brevitas(copy.deepcopy(model), r), data.train[0])
        fit(q, data.train, r.qat_epochs, r.qat_lr, seed)
        acc[bits] = evaluate(q.eval(), *data.test)
    rows.append((seed, fp32, acc[8], acc[7]))
    print(f"seed {seed}: fp32 {fp32:.4f}  int8 w8 {acc[8]:.4f}  int8 w7 {acc[7]:.4f}  "
          f"(w7 - w8 {100 * (acc[7] - acc[8]):+.2f} pp; n={len(data.test[1])}; {time.time() - t:.0f} s)", flush=True)
n = len(rows)
m = [sum(r[i] for r in rows) / n for i in (1, 2, 3)]
print(f"mean over seeds {SEEDS}: fp32 {m[0]:.4f}  int8 w8 {m[1]:.4f}  int8 w7 {m[2]:.4f}  (w7 - w8 {100 * (m[2] - m[1]):+.2f} pp)")
args.json.parent.mkdir(parents=True, exist_ok=True)
args.json.write_text(json.dumps({"arch": str(arch), "fp32_epochs": EPOCHS, "qat_epochs": base.qat_epochs,
                                 "rows": [dict(zip(("seed", "fp32", "int8_w8", "int8_w7"), r)) for r in rows]}, indent=2) + "\n")
print(f"wrote {args.json}")
