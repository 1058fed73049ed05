"""The one grammar of time arguments (CLI flags, API parameters, replay and export windows).

A time is one of (``parse_point``; case-insensitive keywords, surrounding blanks ignored):

- ISO-8601: ``2026-11-22T10:00:00Z``, ``2026-11-22 10:00:00.250+01:00``, ``2026-11-22``
  (no zone: UTC) -- anything ``datetime.fromisoformat`` reads, which starts with a year;
- epoch nanoseconds: ``1795373886390018713``, at least 16 digits (or ``0``): a shorter
  number is epoch seconds or milliseconds by mistake and is refused with the nanoseconds it
  would have meant, never read as a moment of January 1970;
- relative to now: ``-10m``, ``-1.5h``, ``30s ago`` (any duration of ``broker.base.units``;
  ``-1h30m`` is not a form, ``-1.5h`` is);
- relative to the start: ``+30s`` (an end only, given the start it counts from);
- ``earliest`` / ``beginning`` (before every record) and ``now`` / ``latest``;
- a record ``topic:partition:offset`` (``camera.front:0:1200``): an ``OffsetPoint``;
- a drive name (``drive-20261122-101500``), looked up with the ``resolver`` the caller gives
  (edge.drives): as a start it means the drive's start, as an end its end.

Every refusal is a ``TimeSpecError`` (a ``ValueError``) with one message shape:
``invalid time 'TEXT': WHY`` where WHY is what was wrong, or the forms (``FORMS``) when the
text is none of them. ``parse_time_ns`` is the same grammar for callers that need a moment
(not a record position). Parsing never touches the broker except through ``resolver``.
Part of the floor (``broker.base``): imports nothing of ours outside it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from .units import parse_duration_ns

EARLIEST_NS = 0
END_OF_LOG_NS = 2**63 - 1  # a window end after every record (any capture clock, even one in the future)

FORMS = ("ISO-8601 (2026-11-22T10:00:00Z), epoch ns, relative (-10m or 10m ago, +30s for an end), "
         "earliest, now, an offset (topic:partition:offset) or a drive name")
RELATIVE_FORMS = "a relative time is a sign and a duration: -10m, -90s, -1.5h, 30s ago, or +30s for an end"

_OFFSET = re.compile(r"^(?P<topic>[^\s:]+):(?P<partition>\d+):(?P<offset>\d+)$")
_DRIVE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
_AGO = re.compile(r"^(?P<duration>.+?)\s+ago$", re.IGNORECASE)
MIN_EPOCH_NS_DIGITS = 16  # 10^15 ns is 1970-01-12: shorter numbers are seconds or ms by mistake
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Role = Literal["start", "end"]
#: resolver(name) -> (start_ns, end_ns), (start_ns, end_ns, topics) or
#: (start_ns, end_ns, topics, offsets); offsets: (start_offsets, end_offsets) per
#: (topic, partition), or None
DriveResolver = Callable[[str], Sequence[Any]]
DriveOffsets = tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]


class TimeSpecError(ValueError):
    """A time argument that is not one of the accepted forms (or names an unknown drive)."""


def refusal(text: str, why: str | None = None) -> TimeSpecError:
    """The one message of a refused time: ``invalid time 'TEXT': WHY`` (WHY: the forms)."""
    return TimeSpecError(f"invalid time {text!r}: {why or 'expected ' + FORMS}")


@dataclass(frozen=True, slots=True)
class OffsetPoint:
    """A position given as a record of one partition."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"


Point = int | OffsetPoint  # capture time in ns, or a record position


def parse_iso(text: str) -> int:
    """Nanoseconds since the epoch of an ISO-8601 time (no zone: UTC), exact to the microsecond."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise refusal(text) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def parse_relative_ns(duration: str, original: str) -> int:
    """The duration of a relative time (the text after its sign), refused in the one shape."""
    try:
        return parse_duration_ns(duration.strip())
    except ValueError:
        raise refusal(original, RELATIVE_FORMS) from None


def parse_point(text: str, *, role: Role = "start", now_ns: int | None = None, start_ns: int | None = None,
                resolver: DriveResolver | None = None) -> Point:
    """One time argument as a capture time (ns) or an ``OffsetPoint``.

    ``role``: a drive name gives its start or its end; ``start_ns`` is what ``+DURATION``
    counts from (ends only)."""
    if role not in ("start", "end"):
        raise ValueError("role must be 'start' or 'end'")
    raw = text
    text = text.strip()
    if not text:
        raise TimeSpecError(f"empty time: expected {FORMS}")
    now = time.time_ns() if now_ns is None else now_ns
    lowered = text.lower()
    if lowered in ("earliest", "beginning"):
        return EARLIEST_NS
    if lowered in ("now", "latest"):
        return now
    if text[0] == "-":
        return now - parse_relative_ns(text[1:], raw)
    ago = _AGO.match(text)
    if ago:
        return now - parse_relative_ns(ago["duration"], raw)
    if text[0] == "+":
        if role != "end" or start_ns is None:
            raise refusal(raw, "+DURATION is relative to the start, so only an end with a time start takes it")
        return start_ns + parse_relative_ns(text[1:], raw)
    if text.isdigit():
        if len(text) < MIN_EPOCH_NS_DIGITS and int(text) != 0:
            raise refusal(raw, f"looks like epoch seconds or milliseconds; give nanoseconds "
                               f"({int(text) * 10 ** (19 - len(text))} ?) or an ISO-8601 time")
        return int(text)
    if text[:4].isdigit():  # every ISO-8601 time starts with its year
        try:
            return parse_iso(text)
        except TimeSpecError:
            if len(text) >= 10 and text[4] == "-":
                raise  # a date that is wrong, not a drive name
    match = _OFFSET.match(text)
    if match:
        return OffsetPoint(match["topic"], int(match["partition"]), int(match["offset"]))
    if resolver is not None and _DRIVE_NAME.match(text):
        start, end, _topics, _offsets = resolve_drive_window(resolver, text)
        return start if role == "start" else end
    raise refusal(raw, f"expected {FORMS}" + ("" if resolver is not None else " (drive names need the vehicle broker)"))


def parse_time_ns(text: str, *, role: Role = "start", now_ns: int | None = None, start_ns: int | None = None,
                  resolver: DriveResolver | None = None) -> int:
    """``parse_point`` where a moment is needed: a record position is refused (same message shape)."""
    point = parse_point(text, role=role, now_ns=now_ns, start_ns=start_ns, resolver=resolver)
    if isinstance(point, OffsetPoint):
        raise refusal(text, "a record offset (topic:partition:offset) is not a time here; give a time")
    return point


def resolve_drive_window(resolver: DriveResolver, name: str) -> tuple[int, int, tuple[str, ...], DriveOffsets | None]:
    """Call ``resolver`` and normalise its answer to (start_ns, end_ns, topics, offsets)."""
    try:
        answer = resolver(name)
    except TimeSpecError:
        raise
    except Exception as exc:  # the resolver's own error (any type), named in one line
        message = getattr(exc, "message", None) or str(exc)
        raise TimeSpecError(f"drive {name!r}: {message}") from None
    if not isinstance(answer, (tuple, list)) or len(answer) not in (2, 3, 4):
        raise TimeSpecError(f"drive resolver returned {answer!r} for {name!r}, "
                            "not (start_ns, end_ns[, topics[, offsets]])")
    start, end = int(answer[0]), int(answer[1])
    topics = tuple(answer[2]) if len(answer) >= 3 and answer[2] else ()
    offsets: DriveOffsets | None = answer[3] if len(answer) == 4 and answer[3] else None
    return start, end, topics, offsets


def format_ns(ns: int) -> str:
    """ISO-8601 UTC with milliseconds, for messages and progress lines."""
    if ns <= 0:
        return "earliest"
    if ns >= END_OF_LOG_NS:
        return "end of log"
    moment = datetime.fromtimestamp(ns // 1_000_000_000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{(ns // 1_000_000) % 1000:03d}Z"
