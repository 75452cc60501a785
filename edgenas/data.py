"""Data sets: scikit-learn's digits (embedded default), CIFAR-10 python batches, an image folder.

Nothing is downloaded. Every loader returns the same ``DataSplits`` of float32 NCHW arrays,
already resized to the space's input size and normalised, split four ways: ``weights`` and
``alphas`` (disjoint halves for the bilevel search), ``val`` (model selection, QAT calibration)
and ``test`` (the numbers we report, never touched before).
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UsageError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


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
    def train(self) -> tuple[np.ndarray, np.ndarray]:
        """Search halves joined: the final model trains on both."""
        return (np.concatenate([self.weights[0], self.alphas[0]]), np.concatenate([self.weights[1], self.alphas[1]]))


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


def load_folder(path: Path, size: int, seed: int) -> DataSplits:
    """An image folder: one sub-directory per class, images of any size (resized, RGB)."""
    from PIL import Image

    classes = sorted(p.name for p in path.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise UsageError(f"{path}: expected one sub-directory per class (found {len(classes)})")
    xs, ys = [], []
    for label, c in enumerate(classes):
        for f in sorted((path / c).iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                img = Image.open(f).convert("RGB").resize((size, size))
            except Exception:  # noqa: BLE001
                raise UsageError(f"{f}: not a readable image") from None
            xs.append(np.asarray(img, np.float32).transpose(2, 0, 1) / 255.0)
            ys.append(label)
    if len(xs) < 10 * len(classes):
        raise UsageError(f"{path}: {len(xs)} images for {len(classes)} classes; need at least 10 per class")
    return _split(f"folder:{path.name}", np.stack(xs), np.asarray(ys), size, seed)


def load_data(spec: str, size: int, seed: int = 0) -> DataSplits:
    """``digits`` | ``cifar10:PATH`` | ``folder:PATH``."""
    kind, _, arg = spec.partition(":")
    if kind == "digits" and not arg:
        return load_digits(size, seed)
    if kind in ("cifar10", "folder"):
        if not arg:
            raise UsageError(f"--data {kind}:PATH needs a path")
        path = Path(os.path.expanduser(arg))
        if not path.is_dir():
            raise UsageError(f"data path {path} does not exist or is not a directory")
        return (load_cifar10 if kind == "cifar10" else load_folder)(path, size, seed)
    raise UsageError(f"unknown data set {spec!r}; use digits, cifar10:PATH or folder:PATH")
