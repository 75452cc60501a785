"""User-facing errors: one readable line, an exit code, and (optionally) how to fix it.

The CLI prints ``str(err)`` and exits with ``err.exit_code``; tracebacks are shown only with
``--debug``. Anything that is *not* an ``EdgenasError`` is a bug and is reported as such.
"""

from __future__ import annotations


class EdgenasError(Exception):
    """A failure the user can act on (exit code 1)."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(EdgenasError):
    """Bad input from the user: unknown names, malformed files, invalid values (exit code 2)."""

    exit_code = 2


class ConfigError(UsageError):
    """A TOML file (target, recipe) that does not parse or validate. Names the file and field."""

    def __init__(self, path, field: str | None, problem: str):
        where = f"{path}: {field}" if field else f"{path}"
        super().__init__(f"{where}: {problem}")
        self.path, self.field = path, field


# What to do about a damaged file, by its name. The modules that own a layout register their files'
# hints (``build.rundir`` the run directory's, ``tuning_store`` and ``compile.tuning_db`` the
# tuning root's), so file names live with the layout and not here.
DAMAGED_HINTS: dict[str, str] = {}


def register_damaged_hint(file_name: str, hint: str) -> None:
    """Say what a user should do when ``file_name`` (a base name) no longer parses."""
    DAMAGED_HINTS[file_name] = hint


DEFAULT_DAMAGED_HINT = "the run's results cannot be trusted: rebuild the run in a new --out"


class DamagedFile(UsageError):
    """A file edgenas wrote that no longer parses: named, with what to do, never silently skipped."""

    def __init__(self, path, problem: str):
        import os

        self.path = path
        hint = DAMAGED_HINTS.get(os.path.basename(os.fspath(path)), DEFAULT_DAMAGED_HINT)
        super().__init__(f"{path}: {problem}; {hint}")
