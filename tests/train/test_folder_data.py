"""Image folders are decoded lazily (a split holds file names, a batch decodes its own images),
greyscale stays one channel, and DataLoader workers give the same batches as none (docs/data.md)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edgenas.compute import CPU
from edgenas.data import ImageFiles, load_data
from edgenas.train import batches


def _folder(root, n_per_class=15, mode="L", size=12):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(3):
        d = root / f"class{c}"
        d.mkdir(parents=True)
        for i in range(n_per_class):
            a = rng.integers(0, 60, (size, size, 3 if mode == "RGB" else 1), dtype=np.uint8) + 60 * c
            Image.fromarray(a.squeeze(), mode).save(d / f"{i}.png")
    return root


def test_a_grey_folder_is_one_lazy_channel(tmp_path, monkeypatch):
    data = load_data(f"folder:{_folder(tmp_path / 'grey')}", 8, seed=0)
    assert data.channels == 1 and data.classes == 3
    sizes = [len(s[1]) for s in (data.weights, data.alphas, data.val, data.test)]
    assert sizes == [18, 9, 9, 9] and sum(sizes) == 45
    for split in (data.weights, data.alphas, data.val, data.test, data.train, data.subsample(6).weights):
        assert isinstance(split[0], ImageFiles)   # file names, no pixels held
    decoded = []
    monkeypatch.setattr(ImageFiles, "raw", lambda self, f, _raw=ImageFiles.raw: decoded.append(f) or _raw(self, f))
    xb, yb = next(iter(batches(*data.train, 4, np.random.default_rng(0), dataclasses.replace(CPU, data_workers=0))))
    assert xb.shape == (4, 1, 8, 8) and len(decoded) == 4   # one batch decodes its own four images
    # normalised with the training part's statistics: about zero mean, unit variance there
    x = np.asarray(data.weights[0])
    assert abs(float(x.mean())) < 0.5 and 0.5 < float(x.std()) < 1.5
    # the labels follow the files (class c's pixels are brighter with c)
    means = [float(x[data.weights[1] == c].mean()) for c in range(3)]
    assert means == sorted(means)


def test_rgb_folder_and_workers_give_the_same_batches(tmp_path):
    data = load_data(f"folder:{_folder(tmp_path / 'rgb', mode='RGB')}", 8, seed=1)
    assert data.channels == 3 and data.weights[0].shape == (18, 3, 8, 8)
    plain = [b for b in batches(*data.train, 5, np.random.default_rng(3), dataclasses.replace(CPU, data_workers=0))]
    pooled = [b for b in batches(*data.train, 5, np.random.default_rng(3), dataclasses.replace(CPU, data_workers=2))]
    assert len(plain) == len(pooled) == 6
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(plain, pooled))


def test_an_unreadable_image_names_the_file(tmp_path):
    root = _folder(tmp_path / "bad")
    (root / "class0" / "0.png").write_bytes(b"not a png")
    with pytest.raises(Exception, match="0.png: not a readable image"):
        load_data(f"folder:{root}", 8)
