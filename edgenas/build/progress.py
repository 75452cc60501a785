"""Progress reporting as a callback interface, so the Python API and tests stay quiet.

The pipeline calls ``reporter.stage(name, total)`` around each stage and ``advance`` inside it;
the CLI passes a rich-backed reporter (``edgenas.cli.view``).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

Advance = Callable[..., None]  # advance(n=1, note="")


class Reporter:
    """Silent reporter; subclasses draw progress bars."""

    @contextmanager
    def stage(self, name: str, total: int | None = None) -> Iterator[Advance]:
        yield lambda n=1, note="": None

    def info(self, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        pass
