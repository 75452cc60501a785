"""The shared supernet of a multi-target build: trained once, searched per target by alphas only."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from edgenas.fsio import sha256_file
from edgenas.latency.table import LatencyTable, op_key
from edgenas.search.darts import SearchConfig
from edgenas.search.shared import inherit, load_supernet, path_accuracy, path_weights, search_alphas, train_supernet
from edgenas.space.arch import SpaceConfig, StageConfig, arch_from_choices
from edgenas.space.supernet import freeze

from .test_search import _data

SPACE = SpaceConfig(image_size=8, stem=8, num_classes=3, head=16, stages=(StageConfig(8, 2, 1), StageConfig(16, 1, 2)),
                    ops=("mb_k3_e3", "fmb_k3_e2", "skip"))
CFG = SearchConfig(epochs=4, warmup=1, batch=16, a_lr=0.1)


def _table(expensive: str) -> LatencyTable:
    """Every candidate 0.01 ms, ``expensive`` 1 ms: a budget of 0.1 ms leaves room for no layer of it."""
    entries = {}
    for i, ((cin, cout, s), hw) in enumerate(zip(SPACE.positions(), SPACE.spatial_sizes())):
        for op, b in SPACE.candidates(i):
            entries[op_key(op, b, cin, cout, s, hw)] = 1.0 if op == expensive else 0.01
    return LatencyTable("toy", entries, 0.01)


def _supernet(tmp_path, data):
    ck = tmp_path / "supernet.pt"
    train_supernet(SPACE, data, CFG, seed=0, checkpoint=ck)
    return ck


def test_each_target_specialises_the_same_weights_and_leaves_them_untouched(tmp_path):
    data = _data(n=96)
    ck = _supernet(tmp_path, data)
    before = sha256_file(ck)
    probs = {}
    for expensive in ("mb_k3_e3", "fmb_k3_e2"):
        res = search_alphas(SPACE, data, _table(expensive), 0.1, CFG, seed=1, supernet=ck)
        assert len(res.history) == CFG.epochs - CFG.warmup and all(h["w_loss"] is None for h in res.history)
        idx = [op for op, _ in SPACE.candidates(0)].index(expensive)
        probs[expensive] = np.mean([layer[idx] for layer in res.alphas])
        assert res.history[-1]["expected_ms"] < res.history[0]["expected_ms"] or res.expected_ms <= 0.1
    assert sha256_file(ck) == before   # the alpha searches never write the shared weights
    # each target's latency table pushed its own expensive op down: below uniform (1/3)
    assert probs["mb_k3_e3"] < 1 / 3 and probs["fmb_k3_e2"] < 1 / 3


def test_alpha_search_resumes_from_its_checkpoint(tmp_path):
    data = _data(n=48)
    ck = _supernet(tmp_path, data)
    short = dataclasses.replace(CFG, epochs=3)
    res = search_alphas(SPACE, data, _table("skip"), 0.1, short, seed=0, supernet=ck, checkpoint=tmp_path / "a.pt")
    more = search_alphas(SPACE, data, _table("skip"), 0.1, CFG, seed=0, supernet=ck, checkpoint=tmp_path / "a.pt")
    assert more.history[: len(res.history)] == res.history and len(more.history) == len(res.history) + 1


def test_inherited_weights_compute_the_supernet_path(tmp_path):
    data = _data(n=96)
    net = load_supernet(SPACE, CFG, _supernet(tmp_path, data))
    arch = arch_from_choices(SPACE, [("fmb_k3_e2", 8), ("skip", 8), ("mb_k3_e3", 8)])
    model = inherit(freeze(arch), net, arch).eval()
    x = torch.from_numpy(data.val[0][:8])
    with torch.no_grad():
        assert torch.allclose(model(x), net(x, path_weights(net, arch)), atol=1e-5)
    # the trained path is better than chance on the learnable toy signal (3 classes)
    assert path_accuracy(net, arch, data) > 0.5
