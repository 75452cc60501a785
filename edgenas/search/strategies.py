"""Search strategies in a registry: ``darts`` (differentiable, default) and ``random`` (the baseline).

Each is called as ``strategy(space, data, table, budget_ms, cfg, seed, checkpoint, on_step, compute)``
and returns a ``SearchResult``; the build selects one with ``--strategy``. ``compute`` (a
``compute.Compute``) is where and on how many ranks the training runs.
"""

from __future__ import annotations

from ..registry import Registry

STRATEGIES: Registry = Registry("strategy")


@STRATEGIES.register("darts")
def _darts(space, data, table, budget_ms, cfg, seed, checkpoint=None, on_step=None, compute=None):
    from ..compute import CPU
    from .darts import search

    return search(space, data, table, budget_ms, cfg, seed, checkpoint=checkpoint, on_epoch=on_step, compute=compute or CPU)


@STRATEGIES.register("random")
def _random(space, data, table, budget_ms, cfg, seed, checkpoint=None, on_step=None, compute=None):
    from ..compute import CPU
    from .random_search import random_search

    return random_search(space, data, table, budget_ms, cfg, seed, on_sample=on_step, compute=compute or CPU)
