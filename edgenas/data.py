"""Data sets: scikit-learn's digits (embedded default), Fashion-MNIST (Debian package), any IDX
pair (MNIST layout), CIFAR-10 python batches, an image folder.

Nothing is downloaded. Every loader returns the same ``DataSplits``: per split a pair
``(images, labels)`` of float32 NCHW images, already resized to the space's input size and
normalised, split four ways: ``weights`` and ``alphas`` (disjoint halves for the bilevel
search), ``val`` (model selection, QAT calibration) and ``test`` (the numbers we report, never
touched before). The small sets are arrays in memory; an image folder's images are an
``ImageFiles``, decoded only when indexed, so a folder of any size trains in flat memory. The
training loops read either through ``train.SplitDataset`` and a DataLoader (docs/data.md).
"""

from __future__ import annotations

import gzip
import os
import pickle
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .errors import UsageError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
# Debian's ``dataset-fashion-mnist`` (Xiao, Rasul & Vollgraf 2017, MIT licence) installs the four
# IDX files here; ``scripts/_env.sh`` installs the package.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
# IDX element types (the third byte of the magic number): numpy dtype, big-endian.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass(frozen=True)
class DataSplits:
    name: str
    classes: int
    channels: int
    image_size: int
    weights: tuple[np.ndarray, np.ndarray]
    alphas: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]

    @property
    def train(self) -> tuple:
        """Search halves joined: the final model trains on both."""
        return (_concat(self.weights[0], self.alphas[0]), np.concatenate([self.weights[1], self.alphas[1]]))

    def subsample(self, n: int) -> "DataSplits":
        """The first ``n`` weight-split images, ``n // 2`` of the alpha and validation splits (the
        splits are already shuffled, so this is a random subset keeping the 2:1:1 shape); the test
        split is untouched. ``n <= 0`` or ``n`` above the split's size keeps everything. A search
        on 60,000 Fashion-MNIST images does not fit minutes on a laptop CPU; a few thousand do."""
        if n <= 0 or n >= len(self.weights[0]):
            return self
        cut = lambda split, k: (_take(split[0], k), split[1][:k])  # noqa: E731
        return replace(self, weights=cut(self.weights, n), alphas=cut(self.alphas, n // 2), val=cut(self.val, n // 2))


def _resize(x: np.ndarray, size: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    if x.shape[-1] == size and x.shape[-2] == size:
        return x.astype(np.float32)
    t = torch.from_numpy(x.astype(np.float32))
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False).numpy()


def _split(name: str, x: np.ndarray, y: np.ndarray, size: int, seed: int, test: tuple | None = None) -> DataSplits:
    """Normalise per channel (statistics of the training part only) and split 40/20/20/20."""
    x = _resize(x, size)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(x))
    x, y = x[idx], y[idx].astype(np.int64)
    if test is None:
        n_test = len(x) // 5
        test, x, y = (x[:n_test], y[:n_test]), x[n_test:], y[n_test:]
    else:
        test = (_resize(test[0], size), test[1].astype(np.int64))
    n = len(x)
    a, b = n // 2, (3 * n) // 4
    mean = x[:b].mean(axis=(0, 2, 3), keepdims=True)
    std = x[:b].std(axis=(0, 2, 3), keepdims=True) + 1e-6
    norm = lambda v: ((v - mean) / std).astype(np.float32)  # noqa: E731
    return DataSplits(
        name=name,
        classes=int(max(y.max(), test[1].max()) + 1),
        channels=x.shape[1],
        image_size=size,
        weights=(norm(x[:a]), y[:a]),
        alphas=(norm(x[a:b]), y[a:b]),
        val=(norm(x[b:]), y[b:]),
        test=(norm(test[0]), test[1]),
    )


def load_digits(size: int, seed: int) -> DataSplits:
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    return _split("digits", x, d.target, size, seed)


def load_cifar10(path: Path, size: int, seed: int) -> DataSplits:
    """CIFAR-10 "python version": ``data_batch_1..5`` and ``test_batch`` pickles."""
    train_files = sorted(path.glob("data_batch_*"))
    test_file = path / "test_batch"
    if not train_files or not test_file.exists():
        raise UsageError(f"{path}: expected CIFAR-10 python batches (data_batch_1..5, test_batch)")

    def read(f: Path):
        try:
            with open(f, "rb") as fh:
                d = pickle.load(fh, encoding="bytes")
            return np.asarray(d[b"data"], np.uint8).reshape(-1, 3, 32, 32), np.asarray(d[b"labels"])
        except Exception as e:  # noqa: BLE001 - any unreadable batch is the same user error
            raise UsageError(f"{f}: not a CIFAR-10 batch ({type(e).__name__})") from None

    parts = [read(f) for f in train_files]
    x = np.concatenate([p[0] for p in parts]).astype(np.float32) / 255.0
    y = np.concatenate([p[1] for p in parts])
    tx, ty = read(test_file)
    return _split("cifar10", x, y, size, seed, test=(tx.astype(np.float32) / 255.0, ty))


def read_idx(path: Path) -> np.ndarray:
    """One IDX file (LeCun's MNIST format, plain or gzip): magic ``0 0 type ndim``, ``ndim``
    big-endian uint32 sizes, then the data."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise UsageError(f"{path}: cannot read ({e.strerror or type(e).__name__})") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in _IDX_DTYPES:
        raise UsageError(f"{path}: not an IDX file (bad magic number)")
    ndim = raw[3]
    shape = tuple(int(v) for v in np.frombuffer(raw, ">u4", ndim, 4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    if len(raw) != 4 + 4 * ndim + int(np.prod(shape)) * dtype.itemsize:
        raise UsageError(f"{path}: IDX header says {shape} but the file has {len(raw)} bytes")
    return np.frombuffer(raw, dtype, offset=4 + 4 * ndim).reshape(shape)


def _idx_file(path: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (path / name).is_file():
            return path / name
    raise UsageError(f"{path}: missing {stem}[.gz] (expected the MNIST layout: {', '.join(sum(IDX_FILES.values(), ()))})")


def load_idx(path: Path, size: int, seed: int, name: str | None = None) -> DataSplits:
    """An MNIST-layout folder of IDX files; the official ``t10k`` split is the test set, the
    training split is divided into weights / alphas / val."""
    parts = {}
    for split, (images, labels) in IDX_FILES.items():
        x, y = read_idx(_idx_file(path, images)), read_idx(_idx_file(path, labels))
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise UsageError(f"{path}: {split} images {x.shape} and labels {y.shape} do not pair up")
        parts[split] = (x[:, None].astype(np.float32) / 255.0, y.astype(np.int64))
    return _split(name or f"idx:{path.name}", *parts["train"], size, seed, test=parts["test"])


def load_fashion_mnist(size: int, seed: int, path: Path | None = None) -> DataSplits:
    """Fashion-MNIST: 60,000 training and 10,000 test images, 28x28 grey, 10 classes."""
    path = path or FASHION_MNIST_DIR
    if not all((path / f).is_file() or (path / (f + ".gz")).is_file() for f in sum(IDX_FILES.values(), ())):
        raise UsageError(f"Fashion-MNIST not found in {path}: install the Debian package {FASHION_MNIST_PACKAGE} "
                         f"(apt-get install {FASHION_MNIST_PACKAGE}) or pass --data idx:DIR")
    return load_idx(path, size, seed, name="fashion-mnist")


GREY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


class ImageFiles:
    """The images of a folder split as a lazy float32 ``(N, C, size, size)`` array: indexing
    with an int, a slice or an index array decodes those files (PIL, resized, normalised);
    ``take`` and ``concat`` stay lazy. It holds file names only, so it pickles cheaply into
    DataLoader workers and to the other ranks of a distributed build (docs/data.md)."""

    dtype = np.dtype(np.float32)
    ndim = 4

    def __init__(self, files: np.ndarray, size: int, channels: int, mean: np.ndarray | None = None,
                 std: np.ndarray | None = None):
        self.files, self.size, self.channels = np.asarray(files, dtype=object), size, channels
        self.mean = np.zeros((channels, 1, 1), np.float32) if mean is None else mean.reshape(channels, 1, 1)
        self.std = np.ones((channels, 1, 1), np.float32) if std is None else std.reshape(channels, 1, 1)

    def __len__(self) -> int:
        return len(self.files)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.files), self.channels, self.size, self.size)

    def raw(self, f: str) -> np.ndarray:
        """One image as (C, size, size) float32 in [0, 1], before normalisation."""
        from PIL import Image

        try:
            with Image.open(f) as img:
                img = img.convert("L" if self.channels == 1 else "RGB").resize((self.size, self.size))
                a = np.asarray(img, np.float32) / 255.0
        except Exception:  # noqa: BLE001 - any unreadable file is the same user error
            raise UsageError(f"{f}: not a readable image") from None
        return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            return ((self.raw(self.files[key]) - self.mean) / self.std).astype(np.float32)
        files = self.files[key]
        out = np.empty((len(files), self.channels, self.size, self.size), np.float32)
        for i, f in enumerate(files):
            out[i] = (self.raw(f) - self.mean) / self.std
        return out

    def __array__(self, dtype=None, copy=None):
        a = self[np.arange(len(self))]
        return a if dtype is None else a.astype(dtype)

    def take(self, k: int) -> "ImageFiles":
        return self.subset(np.arange(min(k, len(self))))

    def subset(self, idx) -> "ImageFiles":
        return ImageFiles(self.files[idx], self.size, self.channels, self.mean, self.std)

    def concat(self, other: "ImageFiles") -> "ImageFiles":
        return ImageFiles(np.concatenate([self.files, other.files]), self.size, self.channels, self.mean, self.std)


def _take(x, k: int):
    return x.take(k) if isinstance(x, ImageFiles) else x[:k]


def _concat(a, b):
    return a.concat(b) if isinstance(a, ImageFiles) else np.concatenate([a, b])


def load_folder(path: Path, size: int, seed: int) -> DataSplits:
    """An image folder: one sub-directory per class, images of any size, resized; one channel
    when every image is greyscale, else RGB. Decoded lazily (``ImageFiles``); the split is the
    same 40/20/20/20 as ``_split`` and the normalisation statistics come from one streaming pass
    over the training part (mean and variance accumulated in float64)."""
    from PIL import Image

    classes = sorted(p.name for p in path.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise UsageError(f"{path}: expected one sub-directory per class (found {len(classes)})")
    files, labels, grey = [], [], True
    for label, c in enumerate(classes):
        for f in sorted((path / c).iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(f) as img:   # reads the header only
                    grey = grey and img.mode in GREY_MODES
            except Exception:  # noqa: BLE001
                raise UsageError(f"{f}: not a readable image") from None
            files.append(str(f))
            labels.append(label)
    if len(files) < 10 * len(classes):
        raise UsageError(f"{path}: {len(files)} images for {len(classes)} classes; need at least 10 per class")
    idx = np.random.default_rng(seed).permutation(len(files))
    x = ImageFiles(np.asarray(files, dtype=object)[idx], size, 1 if grey else 3)
    y = np.asarray(labels, np.int64)[idx]
    n_test = len(x) // 5
    n = len(x) - n_test
    a, b = n // 2, (3 * n) // 4
    fit_part = x.subset(np.arange(n_test, n_test + b))
    s1, s2, count = np.zeros(x.channels), np.zeros(x.channels), 0
    for f in fit_part.files:
        v = fit_part.raw(f).astype(np.float64)
        s1, s2, count = s1 + v.sum(axis=(1, 2)), s2 + (v * v).sum(axis=(1, 2)), count + v[0].size
    mean = s1 / count
    std = np.sqrt(np.maximum(s2 / count - mean * mean, 0.0)) + 1e-6
    x = ImageFiles(x.files, size, x.channels, mean.astype(np.float32), std.astype(np.float32))
    part = lambda lo, hi: (x.subset(np.arange(lo, hi)), y[lo:hi])  # noqa: E731
    return DataSplits(name=f"folder:{path.name}", classes=int(y.max() + 1), channels=x.channels, image_size=size,
                      weights=part(n_test, n_test + a), alphas=part(n_test + a, n_test + b),
                      val=part(n_test + b, len(x)), test=part(0, n_test))


def load_data(spec: str, size: int, seed: int = 0) -> DataSplits:
    """``digits`` | ``fashion-mnist`` | ``idx:DIR`` | ``cifar10:PATH`` | ``folder:PATH``."""
    kind, _, arg = spec.partition(":")
    if kind == "digits" and not arg:
        return load_digits(size, seed)
    if kind == "fashion-mnist" and not arg:
        return load_fashion_mnist(size, seed)
    if kind in ("cifar10", "folder", "idx"):
        if not arg:
            raise UsageError(f"--data {kind}:PATH needs a path")
        path = Path(os.path.expanduser(arg))
        if not path.is_dir():
            raise UsageError(f"data path {path} does not exist or is not a directory")
        return {"cifar10": load_cifar10, "folder": load_folder, "idx": load_idx}[kind](path, size, seed)
    raise UsageError(f"unknown data set {spec!r}; use digits, fashion-mnist, idx:DIR, cifar10:PATH or folder:PATH")
