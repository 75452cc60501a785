#!/usr/bin/env python
"""Does TVM gain anything from DASS's unstructured sparsity? And from structured channel sparsity?

For a few ops at their search-space shapes, compile INT8 through the profile path
(``edgenas.latency.profile.int8_latency``: brevitas QCDQ export -> integer rewrite -> TVM ->
local measurement) the dense op, its unstructured-sparse variants (DASS top-k masks, zeros kept
in the exported weights) and the structured alternative: the same op with its hidden
(expanded) channels pruned to the same fraction, which is simply a narrower dense op once the
pruned channels are sliced out.

    python scripts/bench_sparsity.py [--out runs/bench_sparsity.json] [--repeat 30]

TVM's dense int8 kernels (and the integer rewrite) treat weights as dense tensors: an
unstructured zero costs the same multiply-add as any other weight, so we expect no gain there,
and a gain roughly proportional to the kept channels for the structured variant.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from edgenas.latency.profile import int8_latency
from edgenas.measure.runners import runner_for
from edgenas.quantize.recipe import get_recipe
from edgenas.space.ops import _Block, create_op
from edgenas.space.sparse import sparse_layers, weight_sparsity
from edgenas.space.units import ConvBNAct
from edgenas.target import get_target

CASES = [("mb_k3_e6", 16, 16, 1, 16), ("mb_k3_e6", 24, 24, 1, 8), ("fmb_k3_e4", 16, 16, 1, 16)]
LEVELS = (50, 75, 90)


class _Seq(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.body = nn.Sequential(m)

    def forward(self, x):
        return self.body(x)


def channel_pruned(op: str, cin: int, cout: int, stride: int, keep: float) -> nn.Module:
    """The op with ``keep`` of its hidden channels left (rounded to a multiple of 8, INT8-friendly)."""
    k, e = int(op.split("_k")[1][0]), int(op.split("_e")[1])
    mid = max(8, int(round(cin * e * keep / 8)) * 8)
    if op.startswith("fmb"):
        body = nn.Sequential(ConvBNAct(cin, mid, k, stride), ConvBNAct(mid, cout, 1, act=None))
    else:
        body = nn.Sequential(ConvBNAct(cin, mid, 1), ConvBNAct(mid, mid, k, stride, groups=mid),
                             ConvBNAct(mid, cout, 1, act=None))
    return _Block(body, stride == 1 and cin == cout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/bench_sparsity.json")
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--target", default="x86-avx2")
    args = ap.parse_args()
    torch.set_num_threads(1)
    recipe, target = get_recipe("int8-per-channel"), get_target(args.target)
    runner = runner_for(target)   # this CPU, through the measurement protocol
    ms = lambda lib, shape: runner.measure(lib, shape, min_samples=args.repeat).stats.median_ms  # noqa: E731
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for op, cin, cout, stride, hw in CASES:
            variants = [("dense", 0, create_op(op, cin, cout, stride))]
            for lv in LEVELS:
                m = create_op(f"{op}_sp{lv}", cin, cout, stride)
                for layer in sparse_layers(m):
                    layer.reinit_scores()  # magnitude mask, as at the start of DASS pruning
                variants.append(("unstructured", lv, m))
                variants.append(("channel", lv, channel_pruned(op, cin, cout, stride, 1 - lv / 100)))
            for kind, lv, module in variants:
                t = time.time()
                lat = int8_latency(_Seq(module), recipe, (1, cin, hw, hw), target, Path(tmp), ms)
                row = {"op": op, "shape": f"{cin}->{cout} s{stride} {hw}x{hw}", "kind": kind, "sparsity": lv,
                       "weight_zeros": round(weight_sparsity(module), 3), "int8_ms": lat}
                rows.append(row)
                print(f"{op:10s} {row['shape']:18s} {kind:12s} {lv:3d}%  zeros {row['weight_zeros']:.2f}  "
                      f"{lat:.4f} ms  ({time.time() - t:.0f} s)", flush=True)
    dense = {(r["op"], r["shape"]): r["int8_ms"] for r in rows if r["kind"] == "dense"}
    for r in rows:
        r["speedup_vs_dense"] = dense[(r["op"], r["shape"])] / r["int8_ms"]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=1))
    print(f"\n{'op':10s} {'shape':18s} {'kind':12s} sparsity  speedup")
    for r in rows:
        print(f"{r['op']:10s} {r['shape']:18s} {r['kind']:12s} {r['sparsity']:7d}%  {r['speedup_vs_dense']:.2f}x")


if __name__ == "__main__":
    main()
