"""Versioned, typed records: ``{"type", "version", "data"}`` JSON, loaded only from known types.

Architectures, latency tables, round results and manifests are frozen dataclasses. Loading a
record looks its type up in a registry instead of unpickling or importing by name, so a record
file can never make the tool execute anything (torchao's config serialisation does the same).
"""

from __future__ import annotations

import dataclasses
import os
import typing
from typing import Any, TypeVar

from . import fsio
from .errors import DamagedFile, UsageError

T = TypeVar("T")
_TYPES: dict[str, tuple[type, int]] = {}


def record(type_name: str, version: int = 1):
    """Class decorator: make ``cls`` a frozen dataclass serialisable under ``type_name``."""

    def wrap(cls: type[T]) -> type[T]:
        if type_name in _TYPES:
            raise ValueError(f"record type {type_name!r} is already registered")
        if not dataclasses.is_dataclass(cls):
            cls = dataclasses.dataclass(frozen=True)(cls)
        _TYPES[type_name] = (cls, version)
        cls.__record_type__ = type_name  # type: ignore[attr-defined]
        cls.__record_version__ = version  # type: ignore[attr-defined]
        return cls

    return wrap


def to_dict(obj: Any) -> dict:
    """Serialise a registered record (nested records and tuples become JSON values)."""
    name = getattr(type(obj), "__record_type__", None)
    if name is None:
        raise TypeError(f"{type(obj).__name__} is not a registered record")
    return {"type": name, "version": type(obj).__record_version__, "data": _encode(obj)}


def from_dict(d: Any, expect: type[T] | None = None) -> T:
    if not isinstance(d, dict) or set(d) != {"type", "version", "data"}:
        raise UsageError("not an edgenas record: expected keys type, version, data")
    if d["type"] not in _TYPES:
        raise UsageError(f"unknown record type {d['type']!r}; known: {', '.join(sorted(_TYPES))}")
    cls, version = _TYPES[d["type"]]
    if d["version"] != version:
        raise UsageError(f"record {d['type']!r} has version {d['version']}, this edgenas reads {version}")
    if expect is not None and cls is not expect:
        raise UsageError(f"expected a {expect.__record_type__!r} record, found {d['type']!r}")  # type: ignore[attr-defined]
    return _decode(cls, d["data"])


def save(path: str | os.PathLike, obj: Any) -> None:
    fsio.write_json(path, to_dict(obj))


def load(path: str | os.PathLike, expect: type[T] | None = None) -> T:
    """The record in ``path``. A file that does not parse, or is not a record of the expected
    type, is a ``DamagedFile`` naming it and what to do; a record of another version is a plain
    ``UsageError`` (readers of older runs may accept those)."""
    try:
        raw = fsio.read_json(path)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    try:
        return from_dict(raw, expect)
    except DamagedFile:
        raise
    except UsageError as e:
        if isinstance(raw, dict) and raw.get("type") in _TYPES and raw.get("version") != _TYPES[raw["type"]][1]:
            raise UsageError(f"{path}: {e}") from None
        raise DamagedFile(path, str(e)) from None


def _encode(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_encode(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): _encode(v) for k, v in obj.items()}
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return obj


def _decode(tp: Any, value: Any) -> Any:
    """Rebuild ``value`` as type ``tp`` using the dataclass field annotations."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        if not isinstance(value, dict):
            raise UsageError(f"{tp.__name__}: expected an object, got {type(value).__name__}")
        names = {f.name for f in dataclasses.fields(tp)}
        unknown = set(value) - names
        if unknown:
            raise UsageError(f"{tp.__name__}: unknown fields {sorted(unknown)}")
        kwargs = {k: _decode(hints[k], v) for k, v in value.items()}
        try:
            return tp(**kwargs)
        except TypeError as e:
            raise UsageError(f"{tp.__name__}: {e}") from None
    if origin is tuple:
        if not isinstance(value, list):
            raise UsageError(f"expected a list, got {type(value).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], v) for v in value)
        return tuple(_decode(a, v) for a, v in zip(args, value))
    if origin is list:
        return [_decode(args[0], v) for v in value]
    if origin is dict:
        return {k: _decode(args[1], v) for k, v in value.items()}
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _decode(inner[0], value) if len(inner) == 1 else value
    if tp is float and isinstance(value, int):
        return float(value)
    if tp in (int, float, str, bool) and not isinstance(value, tp):
        raise UsageError(f"expected {tp.__name__}, got {type(value).__name__}")
    return value
