"""Crash-safe file writes and hashing.

Every file a stage writes goes to a temporary name in the same directory and is renamed into
place (``os.replace`` is atomic on POSIX), so a ``kill -9`` leaves either the old file or the new
one, never half of either.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def cache_root() -> Path:
    """edgenas's own cache (built helpers, unpacked runtimes): ``EDGENAS_CACHE``, else
    ``$XDG_CACHE_HOME/edgenas``, else ``~/.cache/edgenas``; never inside the repository."""
    xdg = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return Path(os.environ.get("EDGENAS_CACHE", xdg / "edgenas"))


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; artifacts are ordinary files
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode())


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def copy_file(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dst)


def stale_name(path: str | os.PathLike, tag: str) -> Path:
    """A free name beside ``path`` for an earlier version of it that edgenas no longer uses:
    ``<stem>.stale-<tag><suffix>``, then ``-2``, ``-3``, ... (so moving it there never overwrites
    an earlier one). ``tag`` is what the old file says it was, so only ``[A-Za-z0-9_.-]`` of it is
    kept. Free when asked: the caller holds the lock that guards ``path``."""
    path, tag = Path(path), re.sub(r"[^A-Za-z0-9_.-]+", "_", tag)[:64]
    names = (path.with_name(f"{path.stem}.stale-{tag}{f'-{n}' if n > 1 else ''}{path.suffix}") for n in itertools.count(1))
    return next(aside for aside in names if not aside.exists())


def read_json(path: str | os.PathLike) -> Any:
    """``path`` parsed as JSON; a file that does not parse is named (``DamagedFile``) with what to do."""
    from .errors import DamagedFile

    try:
        return json.loads(Path(path).read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise DamagedFile(path, f"not valid JSON ({str(e)[:80]})") from None


def no_space_error(path: str | os.PathLike, cause: str = "No space left on device"):
    """The one line for a full disk: the path being written, the cause, and the free space of its
    filesystem and of the temporary directory (compilers write their objects there first)."""
    from .errors import EdgenasError

    def free(p) -> str:
        p = Path(p)
        while not p.exists() and p != p.parent:
            p = p.parent
        try:
            return f"{shutil.disk_usage(p).free / 2**20:.1f} MiB free on {p}"
        except OSError:
            return f"free space on {p} unknown"

    return EdgenasError(f"{path}: {cause.strip()} ({free(Path(path).parent)}, {free(tempfile.gettempdir())}); "
                        f"free some space and rerun (a build continues with --resume)")


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
