"""Whole-model latency predictor: the op-table sum, corrected by a fit on measured whole networks.

    predicted = offset + scale * table_sum + sum_f coef_f * feature_f        (features: dataset.py)

The table sum misses fusion across op boundaries, the boundary quantize/dequantize each op paid
when measured alone, per-call overhead, and the drift of each op class between the moment the
table was profiled and the moment networks are measured. The features count exactly those:
per-layer counts and the table cost per op class (a coefficient on ``cost:<op>`` rescales that
class). Every feature is a sum over layers, so the fitted model is again a per-op table
(``corrected_table``) and the differentiable search (ProxylessNAS/FBNet expected latency)
optimises the very predictor that is evaluated here.

Fitting minimises *relative* squared error (rows weighted by 1/measured^2). Four models, from
simplest to richest: the table sum as is, a ratio, an affine map of the sum, and ``ridge``: the
ratio fit plus a ridge regression of its residual on the standardised features, shrunk towards
the plain ratio with a strength scikit-learn's ``RidgeCV`` chooses by (generalised) leave-one-out.
The model is chosen by leave-one-out error (``cross_val_predict`` with ``LeaveOneOut``): the
simplest within one standard error of the best (Breiman's rule), so that with few points the
simple models win and the features are used once the measurements support them. A ridge model
whose corrected table would hold a non-positive op cost is never chosen, since the search would
then prefer adding layers. docs/latency.md has the reasoning and the measured numbers.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, replace

import numpy as np

from ..records import record
from .dataset import arch_features, key_features
from .table import LatencyTable

KINDS = ("identity", "ratio", "affine", "ridge")
ALPHAS = tuple(float(a) for a in np.logspace(-3, 3, 13))   # RidgeCV's grid on standardised features


@record("latency_predictor", version=3)
@dataclass(frozen=True)
class Predictor:
    target: str = ""
    kind: str = "identity"
    scale: float = 1.0
    offset_ms: float = 0.0
    features: tuple[str, ...] = ()
    coef: tuple[float, ...] = ()
    ridge: float = 0.0                    # the ridge strength RidgeCV chose (kind "ridge")
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
            extra = sum(c * feats.get(f, 0.0) for f, c in zip(self.features, self.coef))
        return self.scale * table_sum_ms + self.offset_ms + extra

    def predict_arch(self, arch, table: LatencyTable) -> float:
        return self.predict(table.arch_sum(arch), arch_features(arch, table) if self.coef else None)

    def corrected_table(self, table: LatencyTable) -> LatencyTable:
        """The predictor as a per-op table: ``corrected_table(t).arch_sum(a) == predict_arch(a, t)``."""
        entries = {k: self.scale * v + _extra(self, k, v) for k, v in table.entries.items()}
        return replace(table, entries=entries, fixed_ms=self.scale * table.fixed_ms + self.offset_ms)


def _extra(p: Predictor, key: str, cost_ms: float) -> float:
    if not p.coef:
        return 0.0
    vals = key_features(key, cost_ms)
    return sum(c * vals.get(f, 0.0) for f, c in zip(p.features, p.coef))


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
def _ratio(T, y) -> float:
    """The scale minimising sum(((s T - y) / y)^2)."""
    w = 1.0 / y
    return float(np.sum(T * w) / np.sum((T * w) ** 2))


def _estimator():
    """The correction as a scikit-learn estimator on ``X = [table_sum, features...]`` (built
    lazily: scikit-learn is imported only when a build fits)."""
    from sklearn.base import BaseEstimator, RegressorMixin

    class Correction(RegressorMixin, BaseEstimator):
        def __init__(self, kind: str = "ratio"):
            self.kind = kind

        def fit(self, X, y):
            T, Z, y = X[:, 0], X[:, 1:], np.asarray(y, float)
            self.scale_, self.offset_, self.coef_, self.alpha_ = 1.0, 0.0, np.zeros(Z.shape[1]), 0.0
            if self.kind == "ratio":
                self.scale_ = _ratio(T, y)
            elif self.kind == "affine":
                A = np.stack([T, np.ones_like(T)], 1) / y[:, None]
                (self.scale_, self.offset_), *_ = np.linalg.lstsq(A, np.ones_like(y), rcond=None)
            elif self.kind == "ridge":
                from sklearn.linear_model import RidgeCV

                self.scale_ = _ratio(T, y)
                mu, sd = Z.mean(0), Z.std(0)
                sd[sd == 0] = 1.0
                ridge = RidgeCV(alphas=ALPHAS).fit((Z - mu) / sd, y - self.scale_ * T, sample_weight=1.0 / y ** 2)
                self.coef_ = ridge.coef_ / sd
                self.offset_, self.alpha_ = float(ridge.intercept_ - np.sum(self.coef_ * mu)), float(ridge.alpha_)
            return self

        def predict(self, X):
            return self.scale_ * X[:, 0] + self.offset_ + X[:, 1:] @ self.coef_

    return Correction


def _loo_errors(kind: str, X, y) -> np.ndarray:
    """Leave-one-out relative errors of ``kind`` (scikit-learn's ``cross_val_predict``)."""
    from sklearn.model_selection import LeaveOneOut, cross_val_predict

    return np.abs(cross_val_predict(_estimator()(kind), X, y, cv=LeaveOneOut()) - y) / y


def fit_predictor(table_sums, measured, features: list[dict[str, float]] | None = None, *, target: str = "",
                  table: LatencyTable | None = None) -> Predictor:
    """Choose and fit the predictor by leave-one-out error (see the module docstring).

    ``features`` (one ``arch_features`` dict per point) enables the ridge model; with ``table``
    given, a ridge model whose corrected table has a non-positive cost is rejected.
    """
    T, y = np.asarray(table_sums, float), np.asarray(measured, float)
    n = len(y)
    names = tuple(sorted({k for f in features for k, v in f.items() if v})) if features else ()
    Z = np.asarray([[f.get(k, 0.0) for k in names] for f in features], float) if features else np.zeros((n, 0))
    X = np.column_stack([T, Z]) if n else np.zeros((0, 1 + len(names)))
    th = table_hash(table) if table is not None else ""
    if n == 0:
        return Predictor(target=target, table_hash=th, fitted_at=time.time())
    kinds = ["identity", "ratio"] if n < 4 or np.ptp(T) <= 1e-9 else ["identity", "ratio", "affine"]
    if n == 1:  # one measurement fixes the scale and nothing else
        kinds = ["ratio"]
    elif names and n >= 6:
        kinds.append("ridge")
    options = []
    for kind in kinds:
        est = _estimator()(kind).fit(X, y)
        pred = _predictor(kind, est, names, n, target, th, X, y)
        if kind == "ridge" and table is not None and not all(v > 0 for v in pred.corrected_table(table).entries.values()):
            continue
        errs = np.abs(T - y) / y if kind == "identity" else _loo_errors(kind, X, y) if n > 1 else np.zeros(1)
        se = float(errs.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0
        options.append((float(errs.mean() * 100), se * 100, pred))
    # Breiman's one-standard-error rule: the simplest model whose LOO error is within one standard
    # error of the best one. With a dozen points LOO is noisy, and a richer model must clearly win.
    best, se = min((o[0], o[1]) for o in options)
    loo, _, pred = next(o for o in options if o[0] <= best + se + 1e-12)
    return replace(pred, loo_mape=loo if n > 1 else None)


def _predictor(kind, est, names, n, target, th, X, y) -> Predictor:
    used = kind == "ridge"
    train = float(np.mean(np.abs(est.predict(X) - y) / y) * 100) if kind != "identity" else float(np.mean(np.abs(X[:, 0] - y) / y) * 100)
    return Predictor(target=target, kind=kind, scale=float(est.scale_), offset_ms=float(est.offset_),
                     features=names if used else (), coef=tuple(float(v) for v in est.coef_) if used else (),
                     ridge=float(est.alpha_), n_points=n, train_mape=train, table_hash=th, fitted_at=time.time())


def fit_arch_predictor(archs, measured, table: LatencyTable, target: str | None = None) -> Predictor:
    """Fit on measured whole architectures against ``table`` (the entry point the build uses)."""
    return fit_predictor([table.arch_sum(a) for a in archs], measured, [arch_features(a, table) for a in archs],
                         target=target or table.target, table=table)


def reusable(pred: Predictor, table: LatencyTable) -> bool:
    """Whether a stored predictor was fitted against this very op table (same target, same costs)."""
    return pred.target == table.target and pred.table_hash == table_hash(table)
