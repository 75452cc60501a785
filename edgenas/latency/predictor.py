"""Whole-model latency predictor: the op-table sum, corrected by a fit on measured whole networks.

The table sum misses what happens between ops (fusion across op boundaries, layout changes,
per-call overhead of the VM), so each round refits ``measured ~ a * table_sum + b`` on every
whole-model measurement so far (least squares; a pure ratio when only one point exists) and
reports its error. The search uses ``a`` to rescale the per-op costs and ``b`` as fixed cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..records import record


@record("latency_predictor")
@dataclass(frozen=True)
class Predictor:
    scale: float = 1.0
    offset_ms: float = 0.0
    n_points: int = 0
    mean_abs_pct_err: float | None = None   # in-sample error of this fit

    def predict(self, table_sum_ms: float) -> float:
        return self.scale * table_sum_ms + self.offset_ms


def fit_predictor(table_sums: list[float], measured: list[float]) -> Predictor:
    x, y = np.asarray(table_sums, float), np.asarray(measured, float)
    if len(x) == 0:
        return Predictor()
    if len(x) == 1 or np.ptp(x) < 1e-9:
        scale, offset = float(y.mean() / max(x.mean(), 1e-9)), 0.0
    else:
        scale, offset = (float(v) for v in np.polyfit(x, y, 1))
        if scale <= 0:  # a negative slope would invert the search's preference: fall back to a ratio
            scale, offset = float(y.mean() / max(x.mean(), 1e-9)), 0.0
    pred = scale * x + offset
    return Predictor(scale, offset, len(x), float(np.mean(np.abs(pred - y) / y) * 100))
