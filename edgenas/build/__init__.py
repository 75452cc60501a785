"""The build: rounds of (latency model -> search -> measure), then train, quantize, compile, measure.

Data flows one way (space -> search -> quantize -> compile -> measure) and the measurements of
each round flow back into the latency predictor the next round searches with. Each stage writes
its outputs atomically into the run directory and is then marked done, so ``resume=True`` picks
up after any interruption; the search and the two trainings also checkpoint every epoch.

Modules: ``config`` (``BuildConfig`` and the named policy presets), ``stages`` (one method per
stage; the order of calls in ``Build.run`` is the data flow), ``rundir`` (the run directory),
``manifest`` (the run's manifest record), ``progress`` (the reporter interface the CLI draws).

Nothing is imported here at module level: readers of a run directory (``bundle``, ``report``,
the CLI) import ``build.rundir`` / ``build.manifest`` without pulling in torch and the search.
"""

from __future__ import annotations


def build(cfg, target, reporter=None, resume: bool = False, farm=None, compute=None):
    """Run (or resume) the build ``cfg`` (a ``config.BuildConfig``) for ``target``, the
    ``TargetSpec`` its caller resolved ``cfg.target`` to; returns the ``Manifest`` written to
    ``cfg.out``. Training runs on ``compute`` (a ``compute.Compute``; default: one CPU process)."""
    from ..compute import CPU
    from .progress import Reporter
    from .stages import Build

    cfg.validate()
    return Build(cfg, target, reporter or Reporter(), resume, farm, compute or CPU).run()


__all__ = ["build"]
