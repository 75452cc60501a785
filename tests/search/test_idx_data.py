"""Fashion-MNIST and ``idx:DIR``: the IDX reader on a small subset of the real files, the official
test split as the test set, and one readable line when the data are missing or malformed."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from edgenas import data as D
from edgenas.errors import UsageError

HAVE_FASHION = all((D.FASHION_MNIST_DIR / (f + ".gz")).is_file() for f in sum(D.IDX_FILES.values(), ()))


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> None:
    """IDX as LeCun defined it: magic 0 0 0x08 ndim, big-endian sizes, uint8 data."""
    raw = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes() + array.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(raw)


def subset_dir(tmp: Path, n_train: int, n_test: int, gz: bool = True) -> Path:
    """The first images of the real Fashion-MNIST, re-written as a smaller IDX set (MNIST layout)."""
    sizes = {"train": n_train, "test": n_test}
    for split, (images, labels) in D.IDX_FILES.items():
        x = D.read_idx(D.FASHION_MNIST_DIR / (images + ".gz"))[: sizes[split]]
        y = D.read_idx(D.FASHION_MNIST_DIR / (labels + ".gz"))[: sizes[split]]
        suffix = ".gz" if gz else ""
        write_idx(tmp / (images + suffix), x, gz)
        write_idx(tmp / (labels + suffix), y, gz)
    return tmp


@pytest.mark.skipif(not HAVE_FASHION, reason=f"Debian package {D.FASHION_MNIST_PACKAGE} not installed")
def test_a_subset_of_fashion_mnist_loads_with_the_official_test_split_and_is_learnable(tmp_path):
    d = D.load_data(f"idx:{subset_dir(tmp_path, 1200, 300, gz=False)}", 14, seed=0)
    assert (d.classes, d.channels, d.image_size) == (10, 1, 14)
    assert [len(s[0]) for s in (d.weights, d.alphas, d.val, d.test)] == [600, 300, 300, 300]
    # the test split is t10k in its own order, not drawn from the training images
    t10k = D.read_idx(D.FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz")[:300]
    assert np.array_equal(d.test[1], t10k)
    # labels pair with their images: a linear model beats chance (10 %) by far after a few steps
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(14 * 14, 10))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    x, y = torch.from_numpy(d.train[0]), torch.from_numpy(d.train[1])
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    acc = (model(torch.from_numpy(d.test[0])).argmax(1).numpy() == d.test[1]).mean()
    assert acc > 0.6, acc
    sub = d.subsample(100)
    assert [len(s[0]) for s in (sub.weights, sub.alphas, sub.val, sub.test)] == [100, 50, 50, 300]
    assert d.subsample(0) is d and d.subsample(10_000) is d


@pytest.mark.skipif(not HAVE_FASHION, reason=f"Debian package {D.FASHION_MNIST_PACKAGE} not installed")
def test_the_named_set_reads_the_package_directory(tmp_path):
    d = D.load_fashion_mnist(8, 0, path=subset_dir(tmp_path, 400, 100))
    assert d.name == "fashion-mnist" and len(d.test[0]) == 100 and d.weights[0].shape[1:] == (1, 8, 8)


def test_missing_fashion_mnist_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "FASHION_MNIST_DIR", tmp_path / "nowhere")
    with pytest.raises(UsageError) as e:
        D.load_data("fashion-mnist", 28)
    msg = str(e.value)
    assert "dataset-fashion-mnist" in msg and "\n" not in msg


def test_idx_errors_are_one_line_naming_the_file(tmp_path):
    with pytest.raises(UsageError, match="train-images-idx3-ubyte"):
        D.load_data(f"idx:{tmp_path}", 8)
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(b"not an idx file")
    with pytest.raises(UsageError, match="bad magic number"):
        D.read_idx(bad)
    write_idx(bad, np.zeros((4, 3, 3)), gz=False)
    bad.write_bytes(bad.read_bytes()[:-2])      # truncated
    with pytest.raises(UsageError, match="IDX header says"):
        D.read_idx(bad)
    with pytest.raises(UsageError, match="does not exist"):
        D.load_data(f"idx:{tmp_path / 'nope'}", 8)
