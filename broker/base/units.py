"""Human-friendly sizes ("256MiB", "1.5GB", 4096) and durations ("72h", "200ms", "1d").

Both parsers accept plain numbers (bytes, resp. seconds as float where said) and raise
ValueError naming the bad text and the accepted forms, so pydantic reports it per key.
"""

from __future__ import annotations

import math
import re

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3, "t": 1000**4, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
_DURATION_NS = {
    "ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60 * 1_000_000_000,
    "min": 60 * 1_000_000_000, "h": 3600 * 1_000_000_000, "d": 86400 * 1_000_000_000, "w": 7 * 86400 * 1_000_000_000,
}
_NUMBER_UNIT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def _finite_int(number: float, value: object, what: str) -> int:
    if not math.isfinite(number):
        raise ValueError(f"{what} {value!r} is too large")
    return int(number)


def parse_size(value: int | float | str) -> int:
    """Bytes from an int or a string like "256MiB" / "2GB" / "4096"."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size such as 4096 or '256MiB', got {value!r}")
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"size must be a finite number, got {value}")
        if value < 0:
            raise ValueError(f"size must not be negative, got {value}")
        return int(value)
    match = _NUMBER_UNIT.match(str(value))
    unit = match.group(2).lower() if match else None
    if not match or unit not in _SIZE_UNITS:
        raise ValueError(
            f"expected a size such as 4096, '64KiB', '256MiB' or '2GB', got {value!r}"
        )
    return _finite_int(float(match.group(1)) * _SIZE_UNITS[unit], value, "size")


def parse_duration_ns(value: int | float | str) -> int:
    """Nanoseconds from a string like "72h" / "200ms" / "1.5s"; a bare number means seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as '200ms' or '72h', got {value!r}")
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"duration must be a finite number of seconds, got {value}")
        if value < 0:
            raise ValueError(f"duration must not be negative, got {value}")
        return _finite_int(value * 1_000_000_000, value, "duration")
    match = _NUMBER_UNIT.match(str(value))
    unit = match.group(2).lower() if match else None
    if match and unit == "":
        unit = "s"
    if not match or unit not in _DURATION_NS:
        raise ValueError(
            f"expected a duration such as '200ms', '30s', '10m', '72h' or '7d', got {value!r}"
        )
    return _finite_int(float(match.group(1)) * _DURATION_NS[unit], value, "duration")


def format_size(n: int | float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n}"


def format_duration_ns(ns: int) -> str:
    """The exact duration as the largest whole unit: 200_000_000 -> "200ms", 7200e9 -> "2h"."""
    for unit in ("w", "d", "h", "m", "s", "ms", "us"):
        factor = _DURATION_NS[unit]
        if ns and ns % factor == 0:
            return f"{ns // factor}{unit}"
    return f"{ns}ns"
