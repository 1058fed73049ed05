"""Time parameters of the API (``time`` of a browse, ``start``/``end`` of a job): the floor's
one grammar (``broker.base.timespec``), a refusal is a 400 naming the text and the forms."""

from __future__ import annotations

from broker.base.timespec import parse_time_ns

from .errors import BadRequest

MAX_TIME_NS = 2**63  # capture timestamps are signed 64-bit nanoseconds


def parse_time(text: str, *, start_ns: int | None = None) -> int:
    """A capture time in nanoseconds, or ``BadRequest`` with the reason. With ``start_ns`` the
    text is a window's end, so ``+30s`` (relative to the start) is one of its forms."""
    try:
        value = parse_time_ns(text, role="start" if start_ns is None else "end", start_ns=start_ns)
    except (ValueError, OverflowError) as exc:
        raise BadRequest(str(exc)) from None
    if not 0 <= value < MAX_TIME_NS:
        raise BadRequest(f"time {text!r} is outside the range of capture timestamps")
    return value
