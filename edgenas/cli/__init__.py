"""The ``edgenas`` command line: parses, calls the Python API, displays. No work happens here.

One module per command group, each registering its commands on ``app.app``: ``build``,
``compile`` (compile, tune-space), ``targets``, ``artifacts`` (package, verify, report), ``measure``
(measure, bench), ``farm`` (farm status); ``view`` renders with rich and ``options`` parses the
options several commands share. ``python -m edgenas.cli`` runs ``__main__.py``.
"""

from __future__ import annotations

# the order of registration is the order of ``edgenas --help``
from . import build, compile, targets, artifacts, farm, measure  # noqa: F401,I001  (each registers its commands)
from .app import app, main

__all__ = ["app", "main"]
