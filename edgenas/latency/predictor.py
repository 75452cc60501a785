"""Whole-model latency predictor: the op-table sum, corrected by a fit on measured whole networks.

    predicted = offset + scale * table_sum + sum_f coef_f * feature_f        (features: dataset.py)

The table sum misses fusion across op boundaries, the boundary quantize/dequantize each op paid
when measured alone, and per-call overhead; the features count exactly those. Every feature is
a sum over layers, so the fitted model is again a per-op table (``corrected_table``) and the
differentiable search (ProxylessNAS/FBNet expected latency) optimises the very predictor that is
evaluated here.

Fitting minimises *relative* squared error (rows weighted by 1/measured), and the model is
chosen by leave-one-out error among, from simplest to richest: the table sum as is, a ratio, an
affine map of the sum, and the feature model (ridge-shrunk towards the ratio fit, strength
chosen by LOO too) — the simplest one within one standard error of the best LOO error. With few
measurements the simple models win; the features are used once the measurements support them.
A feature model whose corrected table would hold a non-positive op cost is never chosen, since
the search would then prefer adding layers.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

import numpy as np

from ..records import record
from .dataset import FEATURES, arch_features, op_features
from .table import LatencyTable

KINDS = ("identity", "ratio", "affine", "features")
_RIDGE = (10.0, 1.0, 1e-1, 1e-2, 1e-3)   # strongest first: ties go to the simpler fit


@record("latency_predictor", version=2)
@dataclass(frozen=True)
class Predictor:
    target: str = ""
    kind: str = "identity"
    scale: float = 1.0
    offset_ms: float = 0.0
    features: tuple[str, ...] = ()
    coef: tuple[float, ...] = ()
    ridge: float = 0.0
    n_points: int = 0
    loo_mape: float | None = None         # leave-one-out mean abs % error (honest for the choice)
    train_mape: float | None = None       # in-sample mean abs % error
    table_hash: str = ""                  # the op table the fit used (a predictor is only reusable with it)
    fitted_at: float = 0.0

    def predict(self, table_sum_ms: float, feats: dict[str, float] | None = None) -> float:
        extra = 0.0
        if self.coef:
            if feats is None:
                raise ValueError(f"this {self.kind} predictor needs the arch features; use predict_arch")
            extra = sum(c * feats[f] for f, c in zip(self.features, self.coef))
        return self.scale * table_sum_ms + self.offset_ms + extra

    def predict_arch(self, arch, table: LatencyTable) -> float:
        return self.predict(table.arch_sum(arch), arch_features(arch) if self.coef else None)

    def corrected_table(self, table: LatencyTable) -> LatencyTable:
        """The predictor as a per-op table: ``corrected_table(t).arch_sum(a) == predict_arch(a, t)``."""
        entries = {k: self.scale * v + _extra(self, k) for k, v in table.entries.items()}
        return LatencyTable(table.target, entries, self.scale * table.fixed_ms + self.offset_ms)


def _extra(p: Predictor, key: str) -> float:
    if not p.coef:
        return 0.0
    vals = dict(zip(FEATURES, op_features(key)))
    return sum(c * vals[f] for f, c in zip(p.features, p.coef))


def table_hash(table: LatencyTable) -> str:
    blob = json.dumps({"e": table.entries, "f": table.fixed_ms}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def quality(predicted, measured) -> dict[str, float]:
    """Mean abs % error, share within ±10 %, and Kendall's tau (ranking) of ``predicted``."""
    from scipy.stats import kendalltau

    p, y = np.asarray(predicted, float), np.asarray(measured, float)
    err = np.abs(p - y) / y
    tau = float(kendalltau(p, y).statistic) if len(y) > 1 else float("nan")
    return {"n": int(len(y)), "mape": float(err.mean() * 100), "within10": float((err <= 0.10 + 1e-9).mean() * 100), "kendall_tau": tau}


# -- fitting -------------------------------------------------------------------------------------
def _solve(kind: str, T, F, y, lam: float = 0.0) -> tuple[float, float, np.ndarray]:
    """(scale, offset, coef) minimising sum(((pred - y) / y)^2) (+ ridge for ``features``)."""
    w = 1.0 / y
    if kind == "identity":
        return 1.0, 0.0, np.zeros(0)
    s_ratio = float(np.sum(T * w) / np.sum((T * w) ** 2))
    if kind == "ratio":
        return s_ratio, 0.0, np.zeros(0)
    if kind == "affine":
        X = np.stack([T, np.ones_like(T)], 1) * w[:, None]
        (s, b), *_ = np.linalg.lstsq(X, y * w, rcond=None)
        return float(s), float(b), np.zeros(0)
    # features: residual of the ratio fit regressed on standardised [T, F] (+ free intercept)
    Z = np.column_stack([T, F])
    mu, sd = Z.mean(0), Z.std(0)
    sd[sd == 0] = 1.0
    Zs = (Z - mu) / sd
    X = np.column_stack([np.ones(len(y)), Zs]) * w[:, None]
    r = (y - s_ratio * T) * w
    pen = np.sqrt(lam * len(y)) * np.eye(Zs.shape[1] + 1)[1:]
    beta, *_ = np.linalg.lstsq(np.vstack([X, pen]), np.concatenate([r, np.zeros(Zs.shape[1])]), rcond=None)
    raw = beta[1:] / sd
    return s_ratio + float(raw[0]), float(beta[0] - np.sum(beta[1:] * mu / sd)), raw[1:]


def _predict(sol, T, F):
    s, b, c = sol
    return s * T + b + (F @ c if len(c) else 0.0)


def _mape(pred, y) -> float:
    return float(np.mean(np.abs(pred - y) / y) * 100)


def _loo(kind: str, T, F, y, lam: float = 0.0) -> tuple[float, float]:
    """Leave-one-out mean abs % error and its standard error."""
    if kind == "identity":
        errs = np.abs(T - y) / y
    else:
        errs = []
        for i in range(len(y)):
            m = np.arange(len(y)) != i
            pred = _predict(_solve(kind, T[m], F[m], y[m], lam), T[i:i + 1], F[i:i + 1])
            errs.append(abs(float(pred[0]) - y[i]) / y[i])
        errs = np.asarray(errs)
    return float(errs.mean() * 100), float(errs.std(ddof=1) / np.sqrt(len(errs)) * 100) if len(errs) > 1 else 0.0


def fit_predictor(table_sums, measured, features: list[dict[str, float]] | None = None, *, target: str = "",
                  table: LatencyTable | None = None) -> Predictor:
    """Choose and fit the predictor by leave-one-out error (see the module docstring).

    ``features`` (one ``arch_features`` dict per point) enables the feature model; with
    ``table`` given, a feature model whose corrected table has a non-positive cost is rejected.
    """
    T, y = np.asarray(table_sums, float), np.asarray(measured, float)
    n = len(y)
    F = np.asarray([[f[k] for k in FEATURES] for f in features], float) if features else np.zeros((n, 0))
    if n == 0:
        return Predictor(target=target, table_hash=table_hash(table) if table else "", fitted_at=time.time())
    if n == 1:  # one measurement fixes the scale and nothing else
        return _finish("ratio", _solve("ratio", T, F, y), 0.0, n, target, table)
    options: list[tuple[tuple[float, float], str, float]] = [(_loo("identity", T, F, y), "identity", 0.0)]
    if n >= 2:
        options.append((_loo("ratio", T, F, y), "ratio", 0.0))
    if n >= 4 and np.ptp(T) > 1e-9:
        options.append((_loo("affine", T, F, y), "affine", 0.0))
    if features and n >= len(FEATURES) + 3:
        for lam in _RIDGE:
            cand = _finish("features", _solve("features", T, F, y, lam), lam, n, target, table)
            if table is None or all(v > 0 for v in cand.corrected_table(table).entries.values()):
                options.append((_loo("features", T, F, y, lam), "features", lam))
    # Breiman's one-standard-error rule: the simplest model whose LOO error is within one standard
    # error of the best one. With a dozen points LOO is noisy, and a richer model must clearly win.
    mean, se = min(o[0] for o in options)
    (loo, _), kind, lam = next(o for o in options if o[0][0] <= mean + se + 1e-12)
    return _finish(kind, _solve(kind, T, F, y, lam), lam, n, target, table, loo, T, F, y)


def _finish(kind, sol, lam, n, target, table, loo=None, T=None, F=None, y=None) -> Predictor:
    s, b, c = sol
    train = _mape(_predict(sol, T, F), y) if y is not None else None
    return Predictor(target=target, kind=kind, scale=float(s), offset_ms=float(b),
                     features=FEATURES if len(c) else (), coef=tuple(float(v) for v in c), ridge=float(lam),
                     n_points=n, loo_mape=loo, train_mape=train,
                     table_hash=table_hash(table) if table is not None else "", fitted_at=time.time())


def fit_arch_predictor(archs, measured, table: LatencyTable, target: str | None = None) -> Predictor:
    """Fit on measured whole architectures against ``table`` (the entry point the build uses)."""
    return fit_predictor([table.arch_sum(a) for a in archs], measured, [arch_features(a) for a in archs],
                         target=target or table.target, table=table)


def reusable(pred: Predictor, table: LatencyTable) -> bool:
    """Whether a stored predictor was fitted against this very op table (same target, same costs)."""
    return pred.target == table.target and pred.table_hash == table_hash(table)
