"""DARTS collapse detection: the share of parameter-free ops (skip) rising through the search.

Differentiable search drifts toward parameter-free ops because they make the supernet easy to
optimise, not because the final network is better (Zela et al. 2020, "Understanding and
robustifying DARTS"; Chu et al. 2020, "DARTS-"). The per-epoch history (``darts.search``) records
the share twice: ``skip_share_probs``, the mean softmax(alpha) mass on those ops, and
``skip_share_arch``, the fraction of the derived (argmax) architecture's layers that are one. A
collapse can show in either first and can be undone by the last epoch, so every epoch is
checked, not only the final one, and the warning names the epoch the share rose past the
threshold.
"""

from __future__ import annotations

DEFAULT_THRESHOLD = 0.5
SIGNALS = ("skip_share_probs", "skip_share_arch")


def skip_share_series(history) -> list[dict]:
    """Per epoch ``{"epoch", "skip_share_probs", "skip_share_arch"}`` (``None`` where not recorded);
    empty for strategies without alphas (random search records samples, not epochs)."""
    return [{"epoch": h.get("epoch", i + 1), **{k: h.get(k) for k in SIGNALS}}
            for i, h in enumerate(history) if any(h.get(k) is not None for k in SIGNALS)]


def first_crossing(history, key: str, threshold: float = DEFAULT_THRESHOLD) -> tuple[int, float] | None:
    """``(epoch, share)`` of the first epoch whose ``key`` share is above ``threshold``, or None."""
    for row in skip_share_series(history):
        if row[key] is not None and row[key] > threshold:
            return row["epoch"], row[key]
    return None


def collapse_warning(history, threshold: float = DEFAULT_THRESHOLD) -> str | None:
    """A one-line warning when, at any epoch, the parameter-free share of softmax(alpha) or of the
    derived architecture rose above ``threshold`` (naming the first such epoch); None otherwise."""
    probs, arch = (first_crossing(history, key, threshold) for key in SIGNALS)
    if probs is None and arch is None:
        return None
    seen = {k: [(r["epoch"], r[k]) for r in skip_share_series(history) if r[k] is not None] for k in SIGNALS}
    parts = []
    if probs is not None:
        (_, start), (end_epoch, end) = seen[SIGNALS[0]][0], seen[SIGNALS[0]][-1]
        parts.append(f"their share of softmax(alpha) rose past {threshold:.2f} at epoch {probs[0]} "
                     f"({start:.2f} -> {end:.2f} by epoch {end_epoch})")
    if arch is not None:
        end_epoch, end = seen[SIGNALS[1]][-1]
        parts.append(f"{arch[1]:.0%} of the derived architecture's layers were parameter-free at epoch {arch[0]} "
                     f"({end:.0%} at epoch {end_epoch})")
    return (f"search collapse toward parameter-free ops (skip): {'; '.join(parts)}. "
            "Try --selection pt, a larger --latency-budget, or more search epochs with a longer warm-up")


def parameter_free_share(arch) -> float:
    """The fraction of ``arch``'s searchable layers that are parameter-free (``skip``): the
    collapse signal of one architecture (the history's ``skip_share_arch``, the bench's skip %).
    ``space.ops`` (torch) is imported here, not at the top: the report reads this module too."""
    from ..space.ops import PARAMETER_FREE

    return sum(layer.op in PARAMETER_FREE for layer in arch.layers) / max(1, len(arch.layers))


def fit_warning(arch, swaps, budget_ms: float, threshold: float = DEFAULT_THRESHOLD) -> str | None:
    """A one-line warning when the budget fit (``budget_fit.py``) left more than ``threshold`` of
    ``arch``'s layers parameter-free. That is not DARTS's collapse (the history's argmax may have
    none) but the budget's: the space cannot meet it with trained ops, and the model would be mostly
    ``skip``. None when the fit made no swap or the share is at or under the threshold."""
    from ..space.ops import PARAMETER_FREE

    share = parameter_free_share(arch)
    if not swaps or share <= threshold:
        return None
    added = sum(s["new_op"] in PARAMETER_FREE for s in swaps)
    return (f"after the budget fit {share:.0%} of the layers are parameter-free ({added} of its {len(swaps)} swap(s) "
            f"chose one): {budget_ms:.3f} ms is tight for this space; try a larger --latency-budget")
