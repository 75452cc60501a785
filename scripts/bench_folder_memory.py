#!/usr/bin/env python
"""Memory of training on an image folder: lazy decoding (``data.ImageFiles`` through a DataLoader
with workers) against holding the folder as arrays, the way ``--data folder:`` loaded it before.

Generates ``--images`` random PNGs in ``--classes`` sub-folders, loads them with
``load_data("folder:...")``, trains a small fixed network for ``--epochs`` over the whole training
split, and samples the resident set size (this process plus its DataLoader workers, psutil)
every 200 ms (PSS, so the forked workers' shared pages count once). Then it materialises the same splits as float32 arrays and measures again. Prints
a table and writes JSON (docs/data.md). Run it under ``flock /tmp/edgenas-bench.lock``.

    python scripts/bench_folder_memory.py --images 10000 --size 32 --out runs/bench_folder_memory
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import numpy as np
import psutil


def rss_mb(proc: psutil.Process) -> float:
    """Proportional set size of this process and its workers (PSS: pages shared between the
    forked workers count once in total, unlike summed RSS)."""
    total = proc.memory_full_info().pss
    for child in proc.children(recursive=True):
        try:
            total += child.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total / 2**20


class Sampler:
    """Peak and series of RSS while a phase runs."""

    def __init__(self):
        self.proc, self.samples, self._stop = psutil.Process(), [], threading.Event()

    def __enter__(self):
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.samples.append(rss_mb(self.proc))
            time.sleep(0.2)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def make_folder(root: Path, n: int, classes: int, size: int) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        c = i % classes
        d = root / f"c{c}"
        d.mkdir(parents=True, exist_ok=True)
        f = d / f"{i:05d}.png"
        if not f.exists():
            a = (rng.integers(0, 128, (size, size, 3)) + 12 * c).astype(np.uint8)
            Image.fromarray(a, "RGB").save(f)
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--size", type=int, default=32, help="image (and training) resolution")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers decoding images")
    ap.add_argument("--out", type=Path, default=Path("runs/bench_folder_memory"))
    a = ap.parse_args()

    import torch

    from edgenas.compute import Compute
    from edgenas.data import load_data
    from edgenas.space.arch import SpaceConfig, arch_from_choices
    from edgenas.space.supernet import freeze
    from edgenas.train import fit

    torch.set_num_threads(1)
    a.out.mkdir(parents=True, exist_ok=True)
    t = time.time()
    folder = make_folder(a.out / "images", a.images, a.classes, a.size)
    gen_s = time.time() - t
    proc = psutil.Process()
    base = rss_mb(proc)
    with Sampler() as load:
        data = load_data(f"folder:{folder}", a.size, 0)
    space = SpaceConfig(image_size=a.size, in_channels=data.channels, num_classes=data.classes)
    torch.manual_seed(0)
    model = freeze(arch_from_choices(space, [space.candidates(i)[0] for i in range(len(space.positions()))]))
    compute = Compute(data_workers=a.workers)
    seen = []
    t = time.time()
    with Sampler() as train:
        fit(model, data.train, a.epochs, 3e-3, 0, batch=64, compute=compute, on_epoch=lambda e, loss: seen.append(loss))
    train_s = time.time() - t
    n_train = len(data.train[1])
    with Sampler() as eager:
        arrays = [np.asarray(s[0]) for s in (data.weights, data.alphas, data.val, data.test)]
    held = sum(x.nbytes for x in arrays) / 2**20
    s = train.samples
    q = max(1, len(s) // 10)
    rows = {
        "images": a.images, "size": a.size, "channels": data.channels, "train_images": n_train, "epochs": a.epochs,
        "workers": a.workers, "generate_s": round(gen_s, 1), "train_s": round(train_s, 1),
        "pss_before_load_mb": round(base, 1), "pss_peak_load_mb": round(max(load.samples, default=base), 1),
        # after the workers started (a quarter into training) against the end: flat when lazy
        "pss_train_at_25pct_mb": round(s[len(s) // 4], 1), "pss_train_at_50pct_mb": round(s[len(s) // 2], 1),
        "pss_train_at_end_mb": round(float(np.median(s[-q:])), 1), "pss_train_peak_mb": round(max(s), 1),
        "arrays_held_mb": round(held, 1), "pss_after_materialising_mb": round(max(eager.samples, default=0.0), 1),
        "load_1min": open("/proc/loadavg").read().split()[0],
    }
    (a.out / "results.json").write_text(json.dumps({**rows, "pss_train_series_mb": [round(v, 1) for v in s]}, indent=1))
    w = max(len(k) for k in rows)
    for k, v in rows.items():
        print(f"{k:<{w}}  {v}")


if __name__ == "__main__":
    main()
