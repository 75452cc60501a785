"""The training device: ``--train-device cpu`` keeps today's results bit for bit, devices resolve
once with readable errors, and 2 gloo processes search like 1 (docs/distributed.md)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from edgenas.compute import CPU, Compute, compute_group, resolve_compute, resolve_device
from edgenas.data import DataSplits
from edgenas.errors import UsageError
from edgenas.latency.table import LatencyTable, op_key
from edgenas.search.darts import SearchConfig, search
from edgenas.space.arch import SpaceConfig, StageConfig
from edgenas.space.supernet import freeze
from edgenas.train import fit


def _data(n=64, seed=0) -> DataSplits:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, 4 * n)
    x = rng.standard_normal((4 * n, 1, 8, 8)).astype("float32") * 0.3
    x[:, 0, 2, 2] += y
    part = lambda i: (x[i * n : (i + 1) * n], y[i * n : (i + 1) * n])  # noqa: E731
    return DataSplits("toy", 3, 1, 8, part(0), part(1), part(2), part(3))


SPACE = SpaceConfig(image_size=8, stem=8, num_classes=3, head=16, stages=(StageConfig(8, 2, 1), StageConfig(16, 1, 2)),
                    ops=("mb_k3_e3", "fmb_k3_e2", "skip"))
# a decided search (fast alphas, one op clearly cheapest), so that the architecture is no coin toss
CFG = SearchConfig(epochs=3, warmup=1, batch=16, a_lr=3e-2, latency_weight=2.0)


def _table(space: SpaceConfig) -> LatencyTable:
    entries = {}
    for i, ((cin, cout, s), hw) in enumerate(zip(space.positions(), space.spatial_sizes())):
        for op, b in space.candidates(i):
            entries[op_key(op, b, cin, cout, s, hw)] = {"mb_k3_e3": 0.3, "fmb_k3_e2": 0.1, "skip": 0.15}[op]
    return LatencyTable("toy", entries, 0.05)


def _reference_fit(model, x, y, epochs, lr, seed, batch=64):
    """The training loop as it was before the DataLoader and the device (numpy batches)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-5)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, epochs))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    for epoch in range(epochs):
        rng = np.random.default_rng(seed * 1000 + epoch)
        torch.manual_seed(seed * 1000 + epoch)
        model.train()
        idx = rng.permutation(len(x))
        for i in range(0, len(x), batch):
            j = idx[i : i + batch]
            opt.zero_grad()
            loss_fn(model(torch.from_numpy(x[j])), torch.from_numpy(y[j])).backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
        sched.step()
    return model


def _arch():
    from edgenas.space.arch import arch_from_choices

    return arch_from_choices(SPACE, [("mb_k3_e3", 8), ("skip", 8), ("fmb_k3_e2", 8)])


def test_cpu_training_is_bit_identical_to_the_plain_loop():
    data = _data()
    x, y = data.train
    torch.manual_seed(0)
    ref = _reference_fit(freeze(_arch()), x, y, 1, 3e-3, 0, batch=16)
    torch.manual_seed(0)
    new = fit(freeze(_arch()), data.train, 1, 3e-3, 0, batch=16, compute=resolve_compute("cpu"))
    a, b = ref.state_dict(), new.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]


def test_cpu_device_search_equals_the_default():
    data, table = _data(), _table(SPACE)
    ref = search(SPACE, data, table, 0.3, CFG, seed=0)
    cpu = search(SPACE, data, table, 0.3, CFG, seed=0, compute=resolve_compute("cpu"))
    assert ref.alphas == cpu.alphas and ref.history == cpu.history and ref.arch == cpu.arch


def test_devices_resolve_once_with_readable_errors():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda:0" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UsageError, match="choose auto"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="no CUDA GPU"):
            resolve_device("cuda:1")
    with pytest.raises(UsageError, match="at least 1"):
        with compute_group("cpu", 0):
            pass
    assert resolve_compute("cpu") == CPU and Compute(device="cuda:1").kind == "cuda"


class _Killed(Exception):
    pass


def _kill_after(epoch: int):
    def on_epoch(e, _h):
        if e == epoch:
            raise _Killed
    return on_epoch


def test_two_gloo_processes_search_like_one(tmp_path):
    """The data-parallel search (gloo, loopback) picks the architecture of one process, with
    alphas equal up to float summation order (BatchNorm uses the whole batch's statistics); a
    one-process run killed after epoch 2 resumes in two processes."""
    data, table = _data(), _table(SPACE)
    one = search(SPACE, data, table, 0.3, CFG, seed=0)
    with pytest.raises(_Killed):
        search(SPACE, data, table, 0.3, CFG, seed=0, checkpoint=tmp_path / "ck.pt", on_epoch=_kill_after(2))
    with compute_group("cpu", 2) as compute:
        assert compute.world == 2 and compute.rank == 0
        two = search(SPACE, data, table, 0.3, CFG, seed=0, compute=compute)
        resumed = search(SPACE, data, table, 0.3, CFG, seed=0, compute=compute, checkpoint=tmp_path / "ck.pt")
    assert two.arch == one.arch, (str(two.arch), str(one.arch))
    assert np.abs(np.concatenate(two.alphas) - np.concatenate(one.alphas)).max() < 5e-3
    assert [h["val_acc"] for h in two.history] == pytest.approx([h["val_acc"] for h in one.history], abs=0.07)
    assert resumed.history[:2] == one.history[:2] and len(resumed.history) == 3 and resumed.arch == one.arch
    assert np.abs(np.concatenate(resumed.alphas) - np.concatenate(one.alphas)).max() < 5e-3
