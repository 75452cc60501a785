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
