"""Parsing of the options several commands share: durations, bit sets, the device farm."""

from __future__ import annotations

from typing import Optional


def parse_ms(text: Optional[str]) -> Optional[float]:
    """``--latency-budget``: ``4ms``, ``800us``, ``0.5`` (ms) or ``1s`` as milliseconds."""
    from ..errors import UsageError

    if text is None:
        return None
    t = text.strip().lower()
    scale = 1.0
    for suffix, s in (("ms", 1.0), ("us", 1e-3), ("s", 1e3)):
        if t.endswith(suffix):
            t, scale = t[: -len(suffix)], s
            break
    try:
        return float(t) * scale
    except ValueError:
        raise UsageError(f"--latency-budget {text!r}: expected a duration such as 4ms, 800us or 0.5") from None


def bit_set(bits: Optional[str], spec) -> tuple[int, ...]:
    """``--bits 4,8`` as a sorted tuple; without --bits, the target file's ``[search] bits``."""
    from ..errors import UsageError
    from ..target import BIT_WIDTHS

    if bits is None:
        return spec.search_bits
    try:
        out = tuple(sorted({int(b) for b in bits.split(",")}))
    except ValueError:
        raise UsageError(f"--bits {bits!r}: expected comma-separated widths such as 8 or 4,8") from None
    if not out or any(b not in BIT_WIDTHS for b in out):
        raise UsageError(f"--bits {bits!r}: widths must be between {BIT_WIDTHS[0]} and {BIT_WIDTHS[-1]}")
    return out


def parse_tolerance(text: str) -> float:
    """``--tolerance``: ``10%`` or ``0.1`` as a fraction."""
    from ..errors import UsageError

    try:
        return float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    except ValueError:
        raise UsageError(f"--tolerance {text!r}: expected a percentage such as 10% or a fraction such as 0.1") from None


def farm_from_options(tracker: Optional[str], key: Optional[str], spec):
    """A device-farm client when --tracker is given (checked now, before any long work), for the
    target ``spec`` so that its measurements record it."""
    from ..errors import UsageError

    if tracker is None:
        if key is not None:
            raise UsageError("--key needs --tracker HOST:PORT")
        return None
    from ..measure.rpc import Farm

    farm = Farm(tracker, key or spec.rpc_key or spec.name, target=spec.name)
    farm.check()
    return farm
