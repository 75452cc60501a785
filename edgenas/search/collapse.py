"""DARTS collapse detection: the share of parameter-free ops (skip) rising through the search.

Differentiable search drifts toward parameter-free ops because they make the supernet easy to
optimise, not because the final network is better (Zela et al. 2020, "Understanding and
robustifying DARTS"; Chu et al. 2020, "DARTS-"). The per-epoch history already records the share
in softmax(alpha) and in the derived architecture; this turns it into a warning users see.
"""

from __future__ import annotations

DEFAULT_THRESHOLD = 0.5


def collapse_warning(history, threshold: float = DEFAULT_THRESHOLD) -> str | None:
    """A one-line warning when the derived architecture's parameter-free share ends above
    ``threshold`` and rose during the search; None otherwise."""
    shares = [h.get("skip_share_arch") for h in history if h.get("skip_share_arch") is not None]
    probs = [h.get("skip_share_probs") for h in history if h.get("skip_share_probs") is not None]
    if not shares or shares[-1] <= threshold:
        return None
    start = probs[0] if probs else None
    end = probs[-1] if probs else None
    trend = f"; share of softmax(alpha) on them went {start:.2f} -> {end:.2f}" if start is not None else ""
    return (f"search collapse: {shares[-1]:.0%} of the chosen layers are parameter-free (skip){trend}. "
            "Try --selection pt, a larger --latency-budget, or more search epochs with a longer warm-up")
